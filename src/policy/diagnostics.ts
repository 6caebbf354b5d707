/**
 * Diagnostics: errors and warnings that point into a policy's source, and their rendering
 * (`file:line:col: error: message`, the source line, the span underlined, a hint).
 *
 * @module
 */

import type { Span } from "./ast.ts";

/** One problem found in a policy. */
export interface Diagnostic {
  /** Errors stop a policy from compiling; warnings do not. */
  severity: "error" | "warning";
  /** What is wrong, in one sentence. */
  message: string;
  /** Where. */
  span: Span;
  /** An optional suggestion ("did you mean 'snap'?"). */
  hint?: string;
}

/** An error raised with a set of diagnostics (the CLI prints them and exits 1). */
export class PolicyError extends Error {
  /** The diagnostics (at least one error). */
  readonly diagnostics: Diagnostic[];
  /** File name used in messages. */
  readonly file: string;
  /** Source text, for rendering. */
  readonly source: string;

  /** Builds the error; its message is the rendered diagnostics. */
  constructor(file: string, source: string, diagnostics: Diagnostic[]) {
    super(renderDiagnostics(file, source, diagnostics));
    this.name = "PolicyError";
    this.file = file;
    this.source = source;
    this.diagnostics = diagnostics;
  }
}

/**
 * Offset → line:column lookups in one source: the line starts are found once (linear), then each
 * lookup is a binary search. Lines end at `\n` (a `\r` before it belongs to the line).
 */
export class LineIndex {
  private readonly starts: number[] = [0];

  /** Indexes `source`. */
  constructor(readonly source: string) {
    for (let i = source.indexOf("\n"); i !== -1; i = source.indexOf("\n", i + 1)) {
      this.starts.push(i + 1);
    }
  }

  /** The 1-based line that holds `offset` (offsets past the end are on the last line). */
  lineOf(offset: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid] <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  }

  /** The span from `start` to `end` (0-based offsets; `end` is raised to `start` if below). */
  span(start: number, end: number): Span {
    const line = this.lineOf(start);
    return { start, end: Math.max(end, start), line, column: start - this.starts[line - 1] + 1 };
  }
}

/**
 * Computes a span from offsets in `source`. Each call scans the source up to `start`; for many
 * spans in one source, use a {@link LineIndex}.
 */
export function spanAt(source: string, start: number, end: number): Span {
  let line = 1;
  let lineStart = 0;
  const limit = Math.min(start, source.length);
  for (let i = source.indexOf("\n"); i !== -1 && i < limit; i = source.indexOf("\n", i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { start, end: Math.max(end, start), line, column: start - lineStart + 1 };
}

/**
 * Lines of a source by number, found by scanning forward from the last line asked for: lines
 * asked in increasing order cost one pass over the source in all, and nothing is split.
 */
class LineReader {
  private line = 1;
  private start = 0;
  private end: number;

  constructor(private readonly source: string) {
    this.end = this.lineEnd(0);
  }

  private lineEnd(start: number): number {
    const i = this.source.indexOf("\n", start);
    return i === -1 ? this.source.length : i;
  }

  /** The text of 1-based line `n`, without its `\n` (and `\r`); "" past the end. */
  text(n: number): string {
    if (n < this.line) {
      this.line = 1;
      this.start = 0;
      this.end = this.lineEnd(0);
    }
    while (this.line < n) {
      if (this.end === this.source.length) return "";
      this.start = this.end + 1;
      this.end = this.lineEnd(this.start);
      this.line++;
    }
    const text = this.source.slice(this.start, this.end);
    return text.endsWith("\r") ? text.slice(0, -1) : text;
  }
}

/** Source lines longer than this are shown as an excerpt around the diagnostic's column. */
const MAX_SHOWN_LINE = 160;

/** Renders one diagnostic with its source line and a caret underline. */
export function renderDiagnostic(file: string, source: string, d: Diagnostic): string {
  return renderWithLines(file, new LineReader(source), d);
}

/** {@link renderDiagnostic}, reading the source line from `lines`. */
function renderWithLines(file: string, lines: LineReader, d: Diagnostic): string {
  const { line, column } = d.span;
  const full = lines.text(line);
  // A long line (a minified policy, a huge string) is cut to a window around the column, so that
  // many diagnostics on one line do not print the line many times over.
  const from = full.length > MAX_SHOWN_LINE
    ? Math.max(0, Math.min(column - 1 - MAX_SHOWN_LINE / 4, full.length - MAX_SHOWN_LINE))
    : 0;
  const to = Math.min(full.length, from + MAX_SHOWN_LINE);
  const lead = from > 0 ? "…" : "";
  const text = lead + full.slice(from, to).replace(/\t/g, " ") + (to < full.length ? "…" : "");
  const caretColumn = column - from + lead.length;
  const lineEnd = to - (column - 1);
  const width = Math.max(1, Math.min(d.span.end - d.span.start, Math.max(lineEnd, 1)));
  const gutter = String(line);
  const pad = " ".repeat(gutter.length);
  const out = [
    `${file}:${line}:${column}: ${d.severity}: ${d.message}`,
    `${pad} |`,
    `${gutter} | ${text}`,
    `${pad} | ${" ".repeat(Math.max(0, caretColumn - 1))}${"^".repeat(width)}`,
  ];
  if (d.hint) out.push(`${pad} = ${d.hint}`);
  return out.join("\n");
}

/** At most this many diagnostics are rendered; a last line counts the rest. */
export const MAX_RENDERED_DIAGNOSTICS = 500;

/**
 * Renders diagnostics in source order, errors and warnings alike (the first
 * {@link MAX_RENDERED_DIAGNOSTICS}, then a count of the others), in one pass over the source.
 */
export function renderDiagnostics(file: string, source: string, list: Diagnostic[]): string {
  const lines = new LineReader(source);
  const sorted = sortDiagnostics(list);
  const shown = sorted.slice(0, MAX_RENDERED_DIAGNOSTICS).map((d) =>
    renderWithLines(file, lines, d)
  );
  const rest = sorted.length - MAX_RENDERED_DIAGNOSTICS;
  if (rest > 0) shown.push(`${file}: ${rest} more diagnostic${rest === 1 ? "" : "s"} not shown`);
  return shown.join("\n\n");
}

/** Sorts diagnostics by position (stable). */
export function sortDiagnostics(list: Diagnostic[]): Diagnostic[] {
  return [...list].sort((a, b) => a.span.start - b.span.start);
}
