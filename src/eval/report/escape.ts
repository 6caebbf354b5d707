/**
 * Escaping text for HTML and SVG (element content and attribute values alike).
 *
 * @module
 */

/** Replaces `& < > " '` with entities. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A number with at most `digits` decimals, without trailing zeros (for SVG coordinates). */
export function num(value: number, digits = 2): string {
  return String(Number(value.toFixed(digits)));
}
