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

/** Computes a span from offsets in `source`. */
export function spanAt(source: string, start: number, end: number): Span {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < start && i < source.length; i++) {
    if (source[i] === "\n") {
      line++;
      lineStart = i + 1;
    }
  }
  return { start, end: Math.max(end, start), line, column: start - lineStart + 1 };
}

/** Renders one diagnostic with its source line and a caret underline. */
export function renderDiagnostic(file: string, source: string, d: Diagnostic): string {
  const { line, column } = d.span;
  const lines = source.split("\n");
  const text = (lines[line - 1] ?? "").replace(/\r$/, "").replace(/\t/g, " ");
  const lineEnd = text.length - (column - 1);
  const width = Math.max(1, Math.min(d.span.end - d.span.start, Math.max(lineEnd, 1)));
  const gutter = String(line);
  const pad = " ".repeat(gutter.length);
  const out = [
    `${file}:${line}:${column}: ${d.severity}: ${d.message}`,
    `${pad} |`,
    `${gutter} | ${text}`,
    `${pad} | ${" ".repeat(column - 1)}${"^".repeat(width)}`,
  ];
  if (d.hint) out.push(`${pad} = ${d.hint}`);
  return out.join("\n");
}

/** Renders diagnostics in source order, errors and warnings alike. */
export function renderDiagnostics(file: string, source: string, list: Diagnostic[]): string {
  return sortDiagnostics(list).map((d) => renderDiagnostic(file, source, d)).join("\n\n");
}

/** Sorts diagnostics by position (stable). */
export function sortDiagnostics(list: Diagnostic[]): Diagnostic[] {
  return [...list].sort((a, b) => a.span.start - b.span.start);
}
