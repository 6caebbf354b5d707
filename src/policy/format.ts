/**
 * The canonical formatter: one statement per line ending in `;`, single spaces, arguments in
 * parentheses (`max(251, 10%)` too), numbers as written (suffix `K` → `k`), comments kept
 * (full-line comments before the statement they preceded, trailing comments after it), runs of
 * blank lines collapsed to one.
 * `parse(format(p))` has the same AST as `parse(p)`, and formatting is idempotent.
 *
 * @module
 */

import type {
  CallNode,
  CommentNode,
  IndexItem,
  PolicyAst,
  SelectorNode,
  StatementNode,
  TargetNode,
  ValueNode,
} from "./ast.ts";
import { quote } from "./parse.ts";

/** Prints a value as canonically written (`4k`, `10%`, `0.5`, `"s"`, `max`, `max(251, 10%)`). */
export function formatValue(v: ValueNode): string {
  if (v.kind === "string") return quote(v.value);
  if (v.kind === "name") return v.name;
  if (v.kind === "extremum") return `${v.op}(${v.args.map(formatValue).join(", ")})`;
  return v.raw + v.unit;
}

/** Prints a call: `full`, `snap(k=1024, pool=7)`, `window(4)`. */
export function formatCall(c: CallNode): string {
  if (c.args.length === 0) return c.name;
  const args = c.args.map((a) =>
    a.name ? `${a.name.text}=${formatValue(a.value)}` : formatValue(a.value)
  );
  return `${c.name}(${args.join(", ")})`;
}

function formatIndex(i: IndexItem): string {
  if (!i.range) return String(i.start);
  return i.end === null ? `${i.start}..` : `${i.start}..${i.end}`;
}

function formatSelector(s: SelectorNode): string {
  if (s.kind === "all") return "*";
  if (s.kind === "detector") return formatCall(s.call);
  return s.items.map(formatIndex).join(", ");
}

/** Prints a target: `else`, `layers 0..3 heads retrieval`. */
export function formatTarget(t: TargetNode): string {
  if (t.isElse) return "else";
  const parts: string[] = [];
  if (t.layers) parts.push(`layers ${formatSelector(t.layers)}`);
  if (t.heads) parts.push(`heads ${formatSelector(t.heads)}`);
  return parts.join(" ");
}

/** Prints one statement without its `;`. */
export function formatStatement(s: StatementNode): string {
  switch (s.kind) {
    case "header":
      return `policy ${quote(s.name)}`;
    case "use":
      return `use ${quote(s.path)}`;
    case "constant":
      return `let ${s.name} = ${formatValue(s.value)}`;
    case "rule":
      return `${formatTarget(s.target)} -> ${s.pipeline.map(formatCall).join(" + ")}`;
  }
}

/**
 * Formats a whole policy. The AST must come from a parse without errors (statements that failed
 * to parse are absent from the AST and would be lost).
 */
export function formatPolicy(ast: PolicyAst): string {
  const { source } = ast;
  const lines: string[] = [];
  let cursor = 0; // source offset already emitted
  let comment = 0;
  const blankBetween = (from: number, to: number) => /\n[ \t\r]*\n/.test(source.slice(from, to));
  const pushBlank = (from: number, to: number) => {
    if (lines.length && lines.at(-1) !== "" && blankBetween(from, to)) lines.push("");
  };
  const comments: CommentNode[] = ast.comments;

  ast.statements.forEach((stmt, i) => {
    const nextStart = ast.statements[i + 1]?.span.start ?? Infinity;
    // Comments before this statement, and comments inside it, go on lines of their own above it.
    while (comment < comments.length && comments[comment].span.start < stmt.span.end) {
      const c = comments[comment++];
      pushBlank(cursor, c.span.start);
      lines.push(c.text);
      cursor = c.span.end;
    }
    pushBlank(cursor, stmt.span.start);
    let line = `${formatStatement(stmt)};`;
    cursor = stmt.span.end;
    // A comment on the line where the statement ends trails it.
    const next = comments[comment];
    if (
      next && next.span.start < nextStart && !source.slice(cursor, next.span.start).includes("\n")
    ) {
      line += ` ${next.text}`;
      cursor = next.span.end;
      comment++;
    }
    lines.push(line);
  });
  while (comment < comments.length) {
    const c = comments[comment++];
    pushBlank(cursor, c.span.start);
    lines.push(c.text);
    cursor = c.span.end;
  }
  return lines.length ? lines.join("\n") + "\n" : "";
}
