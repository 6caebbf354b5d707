/**
 * Text → AST: runs the Chevrotain lexer and parser (with error recovery) and turns the concrete
 * syntax tree into the span-carrying AST, collecting every syntax error of the file in one pass.
 *
 * @module
 */

import type { CstElement, CstNode, IToken } from "chevrotain";
import { deepExtremum, MAX_EXTREMUM_DEPTH, policyLexer } from "../../grammar/lexer.ts";
import { policyParser } from "../../grammar/parser.ts";
import type {
  ArgumentNode,
  CallNode,
  IndexItem,
  PolicyAst,
  SelectorNode,
  Span,
  StatementNode,
  TargetNode,
  ValueNode,
} from "./ast.ts";
import { type Diagnostic, LineIndex } from "./diagnostics.ts";
import { literalRangeError, type NumberUnit } from "./numbers.ts";

/** The result of parsing: an AST (possibly partial) and the syntax errors found. */
export interface ParseResult {
  /** The AST; statements that failed to parse are left out. */
  ast: PolicyAst;
  /** Syntax errors, in source order. */
  diagnostics: Diagnostic[];
}

/**
 * The largest policy accepted, in characters (UTF-16 code units): 1 MiB, far above any real
 * policy. Longer text is refused before lexing with one error that names the limit.
 */
export const MAX_POLICY_CHARS = 1024 * 1024;

/** The last parse, reused when the same text is parsed again (`use` scan, then compile). */
let lastParse: { source: string; result: ParseResult } | undefined;

/**
 * Parses policy text. Never throws on any input. Time and memory are linear in the length of the
 * text, which is at most {@link MAX_POLICY_CHARS}. Parsing the text of the previous call again
 * reuses that call's result (with `file` replaced), so callers that first scan a policy's `use`
 * imports and then compile it lex and parse it once.
 */
export function parsePolicy(source: string, file = "<inline>"): ParseResult {
  if (lastParse?.source !== source) {
    lastParse = undefined; // drop the old tree before building a new one
    lastParse = { source, result: parseUncached(source) };
  }
  const { ast, diagnostics } = lastParse.result;
  const copy = { ...ast, file, statements: [...ast.statements], comments: [...ast.comments] };
  return { ast: copy, diagnostics: [...diagnostics] };
}

function parseUncached(source: string): ParseResult {
  const diagnostics: Diagnostic[] = [];
  const ast: PolicyAst = { file: "<inline>", source, statements: [], comments: [] };
  if (source.length > MAX_POLICY_CHARS) {
    diagnostics.push({
      severity: "error",
      message: `policy too large: ${source.length} characters, over the limit of ` +
        `${MAX_POLICY_CHARS} characters (1 MiB); it was not parsed`,
      span: { start: 0, end: 1, line: 1, column: 1 },
      hint: "the limit keeps checking fast; 10,000 rules take about 300 KB",
    });
    return { ast, diagnostics };
  }
  const lines = new LineIndex(source);
  const lexed = policyLexer.tokenize(source);
  for (const e of lexed.errors) {
    const bad = source.slice(e.offset, e.offset + 1);
    diagnostics.push({
      severity: "error",
      message: `unexpected character ${JSON.stringify(bad)}`,
      span: lines.span(e.offset, e.offset + Math.max(1, e.length)),
    });
  }
  const tooDeep = deepExtremum(lexed.tokens);
  if (tooDeep) {
    diagnostics.push({
      severity: "error",
      message: `max(...) and min(...) cannot be nested, and here they are ${
        MAX_EXTREMUM_DEPTH + 1
      } deep; the policy was not parsed`,
      span: lines.span(tooDeep.startOffset, (tooDeep.endOffset ?? tooDeep.startOffset) + 1),
      hint: "write all the values in one max(...) or min(...), e.g. max(251, 10%)",
    });
    return { ast, diagnostics };
  }
  policyParser.input = lexed.tokens;
  const cst = policyParser.policy();
  for (const e of policyParser.errors) {
    const token = e.token;
    const atEnd = token.tokenType.name === "EOF" || Number.isNaN(token.startOffset);
    const start = atEnd ? lastOffset(source) : token.startOffset;
    const end = atEnd ? start + 1 : (token.endOffset ?? token.startOffset) + 1;
    diagnostics.push({ severity: "error", message: e.message, span: lines.span(start, end) });
  }
  policyParser.input = []; // let the tokens go
  const builder = new AstBuilder(source, lines, diagnostics);
  ast.statements = builder.policy(cst);
  ast.comments = (lexed.groups.comments ?? []).map((t: IToken) => ({
    text: t.image.trimEnd(),
    span: builder.tokenSpan(t),
  }));
  // One error per position: recovery can report the same spot twice.
  const sorted = diagnostics.sort((a, b) => a.span.start - b.span.start);
  const unique = sorted.filter((d, i) => i === 0 || sorted[i - 1].span.start !== d.span.start);
  return { ast, diagnostics: unique };
}

/** The offset of the last non-whitespace character (0 for a blank source). */
function lastOffset(source: string): number {
  let i = source.length - 1;
  while (i > 0 && /\s/.test(source[i])) i--;
  return Math.max(0, i);
}

function isToken(e: CstElement): e is IToken {
  return (e as IToken).image !== undefined;
}

/** Walks the CST; any node damaged by error recovery is skipped (its error is already known). */
class AstBuilder {
  constructor(
    private source: string,
    private lines: LineIndex,
    private diagnostics: Diagnostic[],
  ) {}

  tokenSpan(t: IToken): Span {
    return this.lines.span(t.startOffset, (t.endOffset ?? t.startOffset) + 1);
  }

  nodeSpan(n: CstNode): Span {
    const loc = n.location;
    if (!loc || Number.isNaN(loc.startOffset)) return this.lines.span(0, 0);
    return this.lines.span(loc.startOffset, (loc.endOffset ?? loc.startOffset) + 1);
  }

  token(n: CstNode, key: string, i = 0): IToken | undefined {
    const e = n.children[key]?.[i];
    const real = e && isToken(e) && !e.isInsertedInRecovery && !Number.isNaN(e.startOffset);
    return real ? e as IToken : undefined;
  }

  node(n: CstNode, key: string, i = 0): CstNode | undefined {
    const e = n.children[key]?.[i];
    return e && !isToken(e) && !e.recoveredNode ? e : undefined;
  }

  policy(root: CstNode | undefined): StatementNode[] {
    if (!root) return [];
    // Statements and separators, in source order, to find missing ';' between statements.
    const items: { kind: "stmt" | "semi"; offset: number; node?: CstNode }[] = [];
    for (const t of root.children.Semicolon ?? []) {
      if (isToken(t)) items.push({ kind: "semi", offset: t.startOffset });
    }
    for (const s of root.children.statement ?? []) {
      if (!isToken(s) && s.location && !Number.isNaN(s.location.startOffset)) {
        items.push({ kind: "stmt", offset: s.location.startOffset, node: s });
      }
    }
    items.sort((a, b) => a.offset - b.offset);
    const out: StatementNode[] = [];
    let previousWasStatement = false;
    let previousParsed = false;
    for (const item of items) {
      if (item.kind === "semi") {
        previousWasStatement = false;
        continue;
      }
      const stmt = item.node!.recoveredNode ? undefined : this.statement(item.node!);
      if (previousWasStatement && previousParsed) {
        const span = this.nodeSpan(item.node!);
        const word = wordAt(this.source, span.start);
        this.diagnostics.push({
          severity: "error",
          message: `expected ';' before '${word}' (statements are separated by ';')`,
          span: { ...span, end: span.start + Math.max(1, word.length) },
        });
      }
      previousWasStatement = true;
      previousParsed = stmt !== undefined;
      if (stmt) out.push(stmt);
    }
    return out;
  }

  statement(n: CstNode): StatementNode | undefined {
    const header = this.node(n, "header");
    if (header) {
      const name = this.token(header, "StringLiteral");
      return name && { kind: "header", name: unquote(name.image), span: this.nodeSpan(header) };
    }
    const use = this.node(n, "useImport");
    if (use) {
      const path = this.token(use, "StringLiteral");
      return path && { kind: "use", path: unquote(path.image), span: this.nodeSpan(use) };
    }
    const constant = this.node(n, "constant");
    if (constant) {
      const name = this.token(constant, "Identifier");
      const valueNode = this.node(constant, "value");
      const value = valueNode && this.value(valueNode);
      if (!name || !value) return undefined;
      return {
        kind: "constant",
        name: name.image,
        nameSpan: this.tokenSpan(name),
        value,
        span: this.nodeSpan(constant),
      };
    }
    const rule = this.node(n, "rule");
    if (rule) {
      const targetNode = this.node(rule, "target");
      const pipelineNode = this.node(rule, "pipeline");
      const target = targetNode && this.target(targetNode);
      const pipeline = pipelineNode && this.pipeline(pipelineNode);
      if (!target || !pipeline) return undefined;
      return { kind: "rule", target, pipeline, span: this.nodeSpan(rule) };
    }
    return undefined;
  }

  target(n: CstNode): TargetNode | undefined {
    const span = this.nodeSpan(n);
    if (this.token(n, "Else")) return { isElse: true, layers: null, heads: null, span };
    const layerNode = this.node(n, "layerSelector");
    const headNode = this.node(n, "headSelector");
    const layers = layerNode ? this.selector(layerNode) : null;
    const heads = headNode ? this.selector(headNode) : null;
    if ((n.children.layerSelector && !layers) || (n.children.headSelector && !heads)) {
      return undefined;
    }
    if (!layers && !heads) return undefined;
    return { isElse: false, layers: layers ?? null, heads: heads ?? null, span };
  }

  selector(n: CstNode): SelectorNode | undefined {
    const span = this.nodeSpan(n);
    if (this.token(n, "Star")) return { kind: "all", span };
    const call = this.node(n, "call");
    if (call) {
      const c = this.call(call);
      return c && { kind: "detector", call: c, span };
    }
    const list = this.node(n, "indexList");
    if (!list) return undefined;
    const items: IndexItem[] = [];
    for (const e of list.children.index ?? []) {
      if (isToken(e) || e.recoveredNode) return undefined;
      const item = this.index(e);
      if (!item) return undefined;
      items.push(item);
    }
    return { kind: "indices", items, span };
  }

  index(n: CstNode): IndexItem | undefined {
    const start = this.token(n, "start");
    if (!start) return undefined;
    const end = this.token(n, "end");
    const range = this.token(n, "DotDot") !== undefined;
    const a = this.integer(start);
    const b = end ? this.integer(end) : null;
    if (a === undefined || b === undefined) return undefined;
    return { start: a, end: range ? b : a, range, span: this.nodeSpan(n) };
  }

  integer(t: IToken): number | undefined {
    if (!/^\d+$/.test(t.image)) {
      this.diagnostics.push({
        severity: "error",
        message: `expected a non-negative integer index but found '${t.image}'`,
        span: this.tokenSpan(t),
      });
      return undefined;
    }
    return this.literalValue(t, t.image, "");
  }

  /** The value of a number token's digits, or `undefined` (reported) when out of range. */
  literalValue(t: IToken, digits: string, unit: NumberUnit): number | undefined {
    const rangeError = literalRangeError(digits, unit);
    if (rangeError) {
      this.diagnostics.push({ severity: "error", message: rangeError, span: this.tokenSpan(t) });
      return undefined;
    }
    return Number(digits);
  }

  pipeline(n: CstNode): CallNode[] | undefined {
    const calls: CallNode[] = [];
    for (const e of n.children.call ?? []) {
      if (isToken(e) || e.recoveredNode) return undefined;
      const c = this.call(e);
      if (!c) return undefined;
      calls.push(c);
    }
    return calls.length ? calls : undefined;
  }

  call(n: CstNode): CallNode | undefined {
    const name = this.token(n, "Identifier");
    if (!name) return undefined;
    const args: ArgumentNode[] = [];
    const bare = this.node(n, "bareValue");
    if (bare) {
      const value = this.value(bare);
      if (!value) return undefined;
      args.push({ name: null, value, span: value.span });
    }
    const argsNode = this.node(n, "arguments");
    if (n.children.arguments && !argsNode) return undefined;
    if (argsNode && !this.token(argsNode, "RParen")) return undefined;
    for (const e of argsNode?.children.argument ?? []) {
      if (isToken(e) || e.recoveredNode) return undefined;
      const valueNode = this.node(e, "value");
      const value = valueNode && this.value(valueNode);
      if (!value) return undefined;
      const argName = this.token(e, "name");
      args.push({
        name: argName ? { text: argName.image, span: this.tokenSpan(argName) } : null,
        value,
        span: this.nodeSpan(e),
      });
    }
    return { name: name.image, nameSpan: this.tokenSpan(name), args, span: this.nodeSpan(n) };
  }

  value(n: CstNode): ValueNode | undefined {
    const num = this.token(n, "NumberLiteral");
    if (num) return this.number(num);
    const str = this.token(n, "StringLiteral");
    if (str) return { kind: "string", value: unquote(str.image), span: this.tokenSpan(str) };
    const id = this.token(n, "Identifier");
    if (id) return { kind: "name", name: id.image, span: this.tokenSpan(id) };
    const extremum = this.node(n, "extremum");
    return extremum && this.extremum(extremum);
  }

  /** `max(...)` / `min(...)`: its arguments as written (the checker refuses nesting). */
  extremum(n: CstNode): ValueNode | undefined {
    const op = this.token(n, "Max") ? "max" : this.token(n, "Min") ? "min" : null;
    if (!op || !this.token(n, "RParen")) return undefined;
    const args: ValueNode[] = [];
    for (const e of n.children.value ?? []) {
      if (isToken(e) || e.recoveredNode) return undefined;
      const arg = this.value(e);
      if (!arg) return undefined;
      args.push(arg);
    }
    return { kind: "extremum", op, args, span: this.nodeSpan(n) };
  }

  number(t: IToken): ValueNode | undefined {
    const m = t.image.match(/^(-?\d+(?:\.\d+)?)(.*)$/)!;
    const suffix = m[2];
    const span = this.tokenSpan(t);
    if (suffix !== "" && suffix !== "%" && suffix !== "k" && suffix !== "K") {
      this.diagnostics.push({
        severity: "error",
        message: `unknown suffix '${suffix}' in '${t.image}'`,
        span,
        hint: "numbers take 'k' (× 1024, e.g. 4k = 4096) or '%' (of the prompt length)",
      });
      return undefined;
    }
    const unit = suffix === "" ? "" : suffix === "%" ? "%" : "k";
    const value = this.literalValue(t, m[1], unit);
    if (value === undefined) return undefined;
    return { kind: "number", value, unit, raw: m[1], span };
  }
}

/** The run of non-whitespace characters at `offset` (without copying the rest of the source). */
function wordAt(source: string, offset: number): string {
  const word = /\S+/y;
  word.lastIndex = offset;
  return word.exec(source)?.[0] ?? "";
}

/** Decodes a string literal's escapes. */
export function unquote(literal: string): string {
  return literal.slice(1, -1).replace(
    /\\(.)/g,
    (_, c: string) => c === "n" ? "\n" : c === "t" ? "\t" : c,
  );
}

/** Encodes a string as a policy string literal. */
export function quote(text: string): string {
  return `"${
    text.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n").replace(/\t/g, "\\t")
  }"`;
}
