/**
 * Finding and driving a headless Chromium for the report test. When no browser is installed
 * (a bare clone), {@link chromiumMissing} prints a visible SKIP once and the test is ignored;
 * CI installs Debian's `chromium` package.
 */

const CANDIDATES = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"];

function onPath(name: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    try {
      const path = `${dir}/${name}`;
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not here
    }
  }
  return null;
}

/** The browser executable (`KVPOLICY_CHROMIUM` first), or null. */
export const CHROMIUM: string | null = Deno.env.get("KVPOLICY_CHROMIUM") ??
  CANDIDATES.map(onPath).find((p) => p !== null) ?? null;

let warned = false;

/** True (and a SKIP line, once) when no Chromium is installed. */
export function chromiumMissing(): boolean {
  if (CHROMIUM === null && !warned) {
    warned = true;
    console.warn(
      "SKIP: chromium is not installed (apt-get install -y chromium); the browser report test is ignored.",
    );
  }
  return CHROMIUM === null;
}

/** Runs headless Chromium with `extra` flags on a page; returns stdout (throws on failure). */
export async function runChromium(
  extra: string[],
  page: string,
  userDataDir: string,
): Promise<string> {
  const command = new Deno.Command(CHROMIUM!, {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-dev-shm-usage",
      `--user-data-dir=${userDataDir}`,
      ...extra,
      page,
    ],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(45_000),
  });
  const out = await command.output();
  const stdout = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(
      `chromium exited with ${out.code}: ${new TextDecoder().decode(out.stderr).slice(-2000)}`,
    );
  }
  return stdout;
}
