/**
 * The policy language's tokens (Chevrotain lexer). Comments are kept in a token group so the
 * formatter can put them back; whitespace is skipped.
 *
 * @module
 */

import { createToken, type IToken, Lexer, type TokenType } from "chevrotain";

/** An identifier: plugin names, parameter names, constants, enum values. */
export const Identifier: TokenType = createToken({
  name: "Identifier",
  pattern: /[A-Za-z_][A-Za-z0-9_]*/,
  label: "a name",
});

function keyword(word: string): TokenType {
  return createToken({
    name: word[0].toUpperCase() + word.slice(1),
    pattern: new RegExp(word),
    longer_alt: Identifier,
    label: `'${word}'`,
  });
}

/** `policy`. */
export const Policy: TokenType = keyword("policy");
/** `use`. */
export const Use: TokenType = keyword("use");
/** `let`. */
export const Let: TokenType = keyword("let");
/** `layers`. */
export const Layers: TokenType = keyword("layers");
/** `heads`. */
export const Heads: TokenType = keyword("heads");
/** `else`. */
export const Else: TokenType = keyword("else");

/**
 * A function name that is also a name: `max` in `recent=max(251, 10%)`, and in `reduce=max`.
 * Its category is {@link Identifier}, so wherever the grammar takes a name, `max` and `min` still
 * are names; only `value` tells them apart, by the `(` that follows.
 */
function functionName(word: string): TokenType {
  return createToken({
    name: word[0].toUpperCase() + word.slice(1),
    pattern: new RegExp(word),
    longer_alt: Identifier,
    categories: [Identifier],
    label: `'${word}'`,
  });
}

/** `max`, as in `max(251, 10%)` (and a plain name elsewhere: `reduce=max`). */
export const Max: TokenType = functionName("max");
/** `min`, as in `min(20%, 4k)` (and a plain name elsewhere). */
export const Min: TokenType = functionName("min");

/**
 * A number with an optional suffix: `4`, `0.5`, `-1`, `4k`, `10%`. Any letters after the digits
 * are lexed with the number so that `4kb` is one token the checker can reject by name.
 */
export const NumberLiteral: TokenType = createToken({
  name: "NumberLiteral",
  pattern: /-?\d+(?:\.\d+)?(?:%|[A-Za-z_][A-Za-z0-9_]*)?/,
  label: "a number",
});

/** The language of {@link StringLiteral}, as a regular expression (for the railroad diagram). */
const STRING_PATTERN = /"(?:[^"\\\n\r]|\\.)*"/;

/**
 * Matches {@link STRING_PATTERN} at `offset` with a loop: a backtracking regular expression
 * overflows the stack on a string of some megabytes, this scan does not.
 */
function matchString(text: string, offset: number): [string] | null {
  if (text.charCodeAt(offset) !== 0x22) return null;
  for (let i = offset + 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) return [text.slice(offset, i + 1)];
    if (c === 0x0a || c === 0x0d) return null;
    if (c === 0x5c) {
      // `\.`: a backslash takes any next character that `.` matches (not a line terminator).
      const next = text.charCodeAt(i + 1);
      if (
        Number.isNaN(next) || next === 0x0a || next === 0x0d || next === 0x2028 || next === 0x2029
      ) {
        return null;
      }
      i++;
    }
  }
  return null;
}

/** The custom pattern; `toJSON` keeps the serialized grammar (railroad.html) showing the regex. */
const stringMatcher = { exec: matchString, toJSON: () => STRING_PATTERN.source };

/** A double-quoted string with `\"`, `\\`, `\n`, `\t` escapes, on one line. */
export const StringLiteral: TokenType = createToken({
  name: "StringLiteral",
  pattern: stringMatcher,
  start_chars_hint: ['"'],
  line_breaks: false,
  label: "a string",
});

/** `->`. */
export const Arrow: TokenType = createToken({ name: "Arrow", pattern: /->/, label: "'->'" });
/** `..`. */
export const DotDot: TokenType = createToken({ name: "DotDot", pattern: /\.\./, label: "'..'" });
/** `;`. */
export const Semicolon: TokenType = createToken({ name: "Semicolon", pattern: /;/, label: "';'" });
/** `,`. */
export const Comma: TokenType = createToken({ name: "Comma", pattern: /,/, label: "','" });
/** `=`. */
export const Equals: TokenType = createToken({ name: "Equals", pattern: /=/, label: "'='" });
/** `+`. */
export const Plus: TokenType = createToken({ name: "Plus", pattern: /\+/, label: "'+'" });
/** `*`. */
export const Star: TokenType = createToken({ name: "Star", pattern: /\*/, label: "'*'" });
/** `(`. */
export const LParen: TokenType = createToken({ name: "LParen", pattern: /\(/, label: "'('" });
/** `)`. */
export const RParen: TokenType = createToken({ name: "RParen", pattern: /\)/, label: "')'" });

/** `# ...` to the end of the line; kept in the `comments` group. */
export const Comment: TokenType = createToken({
  name: "Comment",
  pattern: /#[^\n\r]*/,
  group: "comments",
});

/** Spaces, tabs and line breaks. */
export const WhiteSpace: TokenType = createToken({
  name: "WhiteSpace",
  pattern: /[ \t\r\n\f\v\u00a0\ufeff]+/,
  group: Lexer.SKIPPED,
});

/**
 * All tokens, in matching order (keywords and function names before identifiers, `->` before
 * numbers).
 */
export const ALL_TOKENS: TokenType[] = [
  WhiteSpace,
  Comment,
  Arrow,
  DotDot,
  NumberLiteral,
  StringLiteral,
  Semicolon,
  Comma,
  Equals,
  Plus,
  Star,
  LParen,
  RParen,
  Policy,
  Use,
  Let,
  Layers,
  Heads,
  Else,
  Max,
  Min,
  Identifier,
];

/** The policy lexer. Reports unexpected characters and keeps going. */
export const policyLexer: Lexer = new Lexer(ALL_TOKENS, {
  positionTracking: "full",
  ensureOptimizations: false,
});

/**
 * How deep `max(...)`/`min(...)` may nest before parsing. The checker refuses any nesting with a
 * clear message; this bound only keeps the recursive parser within its stack on text such as
 * 20,000 × `max(`.
 */
export const MAX_EXTREMUM_DEPTH = 32;

/**
 * The first `max`/`min` token that opens a call more than {@link MAX_EXTREMUM_DEPTH} calls deep
 * inside other `max(...)`/`min(...)` calls, or `undefined`. One pass over the tokens.
 */
export function deepExtremum(tokens: IToken[]): IToken | undefined {
  const opens: boolean[] = []; // per open '(': whether it opened max( / min(
  let depth = 0;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i].tokenType;
    if ((t === Max || t === Min) && tokens[i + 1]?.tokenType === LParen) {
      if (++depth > MAX_EXTREMUM_DEPTH) return tokens[i];
      opens.push(true);
      i++;
    } else if (t === LParen) opens.push(false);
    else if (t === RParen && opens.length && opens.pop()) depth--;
  }
  return undefined;
}
