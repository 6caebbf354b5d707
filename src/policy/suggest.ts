/**
 * "Did you mean …?" suggestions by edit distance.
 *
 * @module
 */

/** Levenshtein distance between two strings (insert, delete, substitute = 1). */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost);
    }
    prev = row;
  }
  return prev[b.length];
}

/**
 * The candidate nearest to `word`, if it is close enough to be a plausible typo
 * (distance ≤ max(1, ⌊len/3⌋), or `word` is a prefix of it).
 */
export function nearest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  const lower = word.toLowerCase();
  for (const c of candidates) {
    const d = c.startsWith(lower) && lower.length >= 2 ? 0.5 : editDistance(lower, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  const limit = Math.max(1, Math.floor(word.length / 3));
  return bestDistance <= limit ? best : undefined;
}

/** `did you mean 'x'?` or, without a close match, the list of valid names. */
export function didYouMean(word: string, candidates: string[], what: string): string {
  const near = nearest(word, candidates);
  if (near) return `did you mean '${near}'?`;
  return candidates.length ? `known ${what}: ${candidates.join(", ")}` : `no ${what} are known`;
}
