/**
 * Locating `../shared` (reference models, fixtures, golden outputs) for tests.
 * Tests that need it call {@link sharedOrSkip} and are ignored with a visible message when absent.
 *
 * @module
 */

/** Absolute path of the `shared/` folder beside the repository. */
export const SHARED_DIR: string = new URL("../../shared/", import.meta.url).pathname.replace(
  /\/$/,
  "",
);

/** True when `../shared` exists next to the repository. */
export const SHARED_AVAILABLE: boolean = (() => {
  try {
    return Deno.statSync(SHARED_DIR).isDirectory;
  } catch {
    return false;
  }
})();

let warned = false;

/**
 * Returns `true` when shared data is missing (so the caller passes it as `ignore`), printing a
 * visible message once per process.
 */
export function sharedMissing(): boolean {
  if (!SHARED_AVAILABLE && !warned) {
    warned = true;
    console.warn(`SKIP: ${SHARED_DIR} is absent; tests that need shared fixtures are ignored.`);
  }
  return !SHARED_AVAILABLE;
}
