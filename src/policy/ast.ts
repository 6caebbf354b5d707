/**
 * The policy AST. Every node keeps its source span so the checker can point at it.
 *
 * @module
 */

/** A range of source text: 1-based line/column of its first and last characters. */
export interface Span {
  /** 0-based offset of the first character. */
  start: number;
  /** 0-based offset one past the last character. */
  end: number;
  /** 1-based line of the first character. */
  line: number;
  /** 1-based column of the first character. */
  column: number;
}

/** A literal or name in argument position. */
export type ValueNode =
  | {
    kind: "number";
    /** The number before any suffix, e.g. 4 for `4k`, 10 for `10%`. */
    value: number;
    /** `""`, `"k"` (× 1024) or `"%"` (of the prompt length, or of the heads for fractions). */
    unit: "" | "k" | "%";
    /** The digits as written (sign and decimal point included, suffix excluded). */
    raw: string;
    span: Span;
  }
  | { kind: "string"; value: string; span: Span }
  | { kind: "name"; name: string; span: Span }
  | ExtremumNode;

/**
 * `max(a, b, ...)` or `min(a, b, ...)`: the larger or smaller of budgets, e.g. RazorAttention's
 * recent window `max(251, 10%)`. The parser takes any values as arguments; the checker takes two
 * or more token counts or percentages, for budget parameters only, and refuses nesting.
 */
export interface ExtremumNode {
  kind: "extremum";
  /** Which function. */
  op: "max" | "min";
  /** The arguments in source order (possibly empty, or nested: the checker refuses both). */
  args: ValueNode[];
  /** The whole value, from the function name to `)`. */
  span: Span;
}

/** `name=value` or a positional `value`. */
export interface ArgumentNode {
  /** The parameter name, or `null` for a positional argument. */
  name: { text: string; span: Span } | null;
  /** The value. */
  value: ValueNode;
  /** The whole argument. */
  span: Span;
}

/** A press or detector invocation: `snap(k=1024, pool=7)`, `window 4`, `lazy`. */
export interface CallNode {
  /** Plugin name. */
  name: string;
  /** Span of the name. */
  nameSpan: Span;
  /** Arguments in source order. */
  args: ArgumentNode[];
  /** The whole call. */
  span: Span;
}

/** One element of an index list: `3`, `0..3` (inclusive), `24..` (to the last). */
export interface IndexItem {
  /** First index. */
  start: number;
  /** Last index (inclusive); `null` for an open range `24..`. */
  end: number | null;
  /** Whether it was written as a range. */
  range: boolean;
  /** Its span. */
  span: Span;
}

/** What a target picks: all, explicit indices, or a detector's verdict. */
export type SelectorNode =
  | { kind: "all"; span: Span }
  | { kind: "indices"; items: IndexItem[]; span: Span }
  | { kind: "detector"; call: CallNode; span: Span };

/** `else`, or `layers S`, `heads S`, `layers S heads S`. */
export interface TargetNode {
  /** True for `else`. */
  isElse: boolean;
  /** Layer selector, if any. */
  layers: SelectorNode | null;
  /** KV-head selector, if any. */
  heads: SelectorNode | null;
  /** The whole target. */
  span: Span;
}

/** `target -> press + press ...`. */
export interface RuleNode {
  kind: "rule";
  target: TargetNode;
  pipeline: CallNode[];
  span: Span;
}

/** `policy "name"`. */
export interface HeaderNode {
  kind: "header";
  name: string;
  span: Span;
}

/** `use "./plugin.ts"`. */
export interface UseNode {
  kind: "use";
  path: string;
  span: Span;
}

/** `let name = value`. */
export interface ConstantNode {
  kind: "constant";
  name: string;
  nameSpan: Span;
  value: ValueNode;
  span: Span;
}

/** Any statement. */
export type StatementNode = HeaderNode | UseNode | ConstantNode | RuleNode;

/** A `# comment`, kept for the formatter. */
export interface CommentNode {
  /** The text including `#`. */
  text: string;
  span: Span;
}

/** A parsed policy. */
export interface PolicyAst {
  /** File name used in messages (`<inline>` for pasted text). */
  file: string;
  /** The source text. */
  source: string;
  /** Statements in source order (statements with syntax errors are left out). */
  statements: StatementNode[];
  /** Comments in source order. */
  comments: CommentNode[];
}
