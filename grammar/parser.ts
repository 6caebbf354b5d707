/**
 * The policy parser (Chevrotain).
 *
 * Why a `CstParser` and not embedded actions: the concrete syntax tree keeps every token with its
 * position, so the CST→AST step (src/policy/cstToAst.ts) can attach exact source spans, detect
 * missing `;` between statements itself, and survive the partial trees that error recovery
 * produces; the grammar stays free of semantic code, which is also what the railroad diagram is
 * generated from. The grammar in EBNF is in `grammar/policy.ebnf` (a test keeps the two in sync).
 *
 * @module
 */

import {
  CstParser,
  type IParserErrorMessageProvider,
  type IToken,
  tokenLabel,
  type TokenType,
} from "chevrotain";
import {
  ALL_TOKENS,
  Arrow,
  Comma,
  DotDot,
  Else,
  Equals,
  Heads,
  Identifier,
  Layers,
  Let,
  LParen,
  Max,
  Min,
  NumberLiteral,
  Plus,
  Policy,
  RParen,
  Semicolon,
  Star,
  StringLiteral,
  Use,
} from "./lexer.ts";

function found(token: IToken): string {
  return token.tokenType.name === "EOF" ? "the end of the policy" : `'${token.image}'`;
}

function labels(paths: TokenType[][][]): string {
  const names = new Set<string>();
  for (const alt of paths) for (const path of alt) if (path.length) names.add(tokenLabel(path[0]));
  const list = [...names];
  return list.length <= 1 ? list.join("") : `${list.slice(0, -1).join(", ")} or ${list.at(-1)}`;
}

/** Short, human error messages: "expected X but found Y". */
const messages: IParserErrorMessageProvider = {
  buildMismatchTokenMessage({ expected, actual }) {
    if (expected.name === "EOF") {
      return `unexpected ${found(actual)}; expected ${RULE_DESCRIPTIONS.statement}`;
    }
    return `expected ${tokenLabel(expected)} but found ${found(actual)}`;
  },
  buildNotAllInputParsedMessage({ firstRedundant }) {
    return `unexpected ${found(firstRedundant)}`;
  },
  buildNoViableAltMessage({ expectedPathsPerAlt, actual, ruleName }) {
    const what = RULE_DESCRIPTIONS[ruleName] ?? labels(expectedPathsPerAlt);
    return `expected ${what} but found ${found(actual[0])}`;
  },
  buildEarlyExitMessage({ expectedIterationPaths, actual, ruleName }) {
    const what = RULE_DESCRIPTIONS[ruleName] ?? labels([expectedIterationPaths]);
    return `expected ${what} but found ${found(actual[0])}`;
  },
};

/** What each grammar rule stands for, in error messages. */
const RULE_DESCRIPTIONS: Record<string, string> = {
  statement: "a rule ('layers', 'heads' or 'else'), 'policy', 'use' or 'let'",
  target: "'layers', 'heads' or 'else'",
  selector: "a detector name, '*' or layer/head indices such as 0..3",
  value: "a value (number, string or name)",
  indexList: "indices such as 0, 2 or 4..7",
  pipeline: "a press such as snap(k=1024)",
};

/** The grammar. Rules are public fields so the railroad diagram and tests can name them. */
export class PolicyParser extends CstParser {
  constructor() {
    super(ALL_TOKENS, {
      recoveryEnabled: true,
      nodeLocationTracking: "full",
      maxLookahead: 3,
      errorMessageProvider: messages,
    });
    this.performSelfAnalysis();
  }

  /** policy := ( statement | ';' )* */
  policy = this.RULE("policy", () => {
    this.MANY(() => {
      this.OR([
        { ALT: () => this.SUBRULE(this.statement) },
        { ALT: () => this.CONSUME(Semicolon) },
      ]);
    });
  });

  /** statement := header | use | constant | rule */
  statement = this.RULE("statement", () => {
    this.OR([
      { ALT: () => this.SUBRULE(this.header) },
      { ALT: () => this.SUBRULE(this.useImport) },
      { ALT: () => this.SUBRULE(this.constant) },
      { ALT: () => this.SUBRULE(this.rule) },
    ]);
  });

  /** header := 'policy' STRING */
  header = this.RULE("header", () => {
    this.CONSUME(Policy);
    this.CONSUME(StringLiteral);
  });

  /** useImport := 'use' STRING */
  useImport = this.RULE("useImport", () => {
    this.CONSUME(Use);
    this.CONSUME(StringLiteral);
  });

  /** constant := 'let' IDENT '=' value */
  constant = this.RULE("constant", () => {
    this.CONSUME(Let);
    this.CONSUME(Identifier);
    this.CONSUME(Equals);
    this.SUBRULE(this.value);
  });

  /** rule := target '->' pipeline */
  rule = this.RULE("rule", () => {
    this.SUBRULE(this.target);
    this.CONSUME(Arrow);
    this.SUBRULE(this.pipeline);
  });

  /** target := 'else' | 'layers' selector ( 'heads' selector )? | 'heads' selector */
  target = this.RULE("target", () => {
    this.OR([
      { ALT: () => this.CONSUME(Else) },
      {
        ALT: () => {
          this.CONSUME(Layers);
          this.SUBRULE(this.selector, { LABEL: "layerSelector" });
          this.OPTION(() => {
            this.CONSUME(Heads);
            this.SUBRULE2(this.selector, { LABEL: "headSelector" });
          });
        },
      },
      {
        ALT: () => {
          this.CONSUME2(Heads);
          this.SUBRULE3(this.selector, { LABEL: "headSelector" });
        },
      },
    ]);
  });

  /** selector := '*' | call | indexList */
  selector = this.RULE("selector", () => {
    this.OR([
      { ALT: () => this.CONSUME(Star) },
      { ALT: () => this.SUBRULE(this.call) },
      { ALT: () => this.SUBRULE(this.indexList) },
    ]);
  });

  /** indexList := index ( ',' index )* */
  indexList = this.RULE("indexList", () => {
    this.AT_LEAST_ONE_SEP({ SEP: Comma, DEF: () => this.SUBRULE(this.index) });
  });

  /** index := NUMBER ( '..' NUMBER? )? */
  index = this.RULE("index", () => {
    this.CONSUME(NumberLiteral, { LABEL: "start" });
    this.OPTION(() => {
      this.CONSUME(DotDot);
      this.OPTION2(() => this.CONSUME2(NumberLiteral, { LABEL: "end" }));
    });
  });

  /** pipeline := call ( '+' call )* */
  pipeline = this.RULE("pipeline", () => {
    this.AT_LEAST_ONE_SEP({ SEP: Plus, DEF: () => this.SUBRULE(this.call) });
  });

  /** call := IDENT ( arguments | value )?   — `snap(k=1024)`, `window 4`, `full` */
  call = this.RULE("call", () => {
    this.CONSUME(Identifier);
    this.OPTION(() => {
      this.OR([
        { ALT: () => this.SUBRULE(this.arguments) },
        { ALT: () => this.SUBRULE(this.value, { LABEL: "bareValue" }) },
      ]);
    });
  });

  /** arguments := '(' ( argument ( ',' argument )* )? ')' */
  arguments = this.RULE("arguments", () => {
    this.CONSUME(LParen);
    this.MANY_SEP({ SEP: Comma, DEF: () => this.SUBRULE(this.argument) });
    this.CONSUME(RParen);
  });

  /** argument := IDENT '=' value | value */
  argument = this.RULE("argument", () => {
    this.OPTION({
      GATE: () => this.LA(2).tokenType === Equals,
      DEF: () => {
        this.CONSUME(Identifier, { LABEL: "name" });
        this.CONSUME(Equals);
      },
    });
    this.SUBRULE(this.value);
  });

  /** value := NUMBER | STRING | extremum | IDENT   — `max` alone is a name (`reduce=max`) */
  value = this.RULE("value", () => {
    this.OR([
      { ALT: () => this.CONSUME(NumberLiteral) },
      { ALT: () => this.CONSUME(StringLiteral) },
      { ALT: () => this.SUBRULE(this.extremum) },
      { ALT: () => this.CONSUME(Identifier) },
    ]);
  });

  /**
   * extremum := ( 'max' | 'min' ) '(' ( value ( ',' value )* )? ')'   — `max(251, 10%)`.
   * The checker takes two or more budgets, not nested; the grammar takes any values so that
   * those mistakes get their own messages (src/policy/parse.ts refuses, before parsing, nesting
   * deeper than `MAX_EXTREMUM_DEPTH` (lexer.ts), which would only exhaust the parser's stack).
   */
  extremum = this.RULE("extremum", () => {
    this.OR([
      { ALT: () => this.CONSUME(Max) },
      { ALT: () => this.CONSUME(Min) },
    ]);
    this.CONSUME(LParen);
    this.MANY_SEP({ SEP: Comma, DEF: () => this.SUBRULE(this.value) });
    this.CONSUME(RParen);
  });
}

/** The single parser instance (Chevrotain parsers are reusable: set `input`, call a rule). */
export const policyParser: PolicyParser = new PolicyParser();
