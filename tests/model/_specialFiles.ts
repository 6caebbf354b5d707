/** FIFOs and devices, for tests of readers that must refuse them instead of blocking. @module */

/** Whether `path` exists and passes `test` (false where the system has no such path). */
export function exists(path: string, test: (info: Deno.FileInfo) => boolean): boolean {
  try {
    return test(Deno.statSync(path));
  } catch {
    return false;
  }
}

/** Whether this system has /dev/zero (an endless character device). */
export const HAS_DEV_ZERO: boolean = exists("/dev/zero", (i) => i.isCharDevice === true);

/** Makes a FIFO at `path` with `mkfifo`; false when this machine has no `mkfifo`. */
export async function makeFifo(path: string): Promise<boolean> {
  try {
    return (await new Deno.Command("mkfifo", { args: [path] }).output()).success;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** The name of a FIFO test: says when it is skipped for want of `mkfifo`. */
export function fifoTestName(name: string, made: boolean): string {
  return made ? name : `${name} (skipped: no mkfifo on this machine)`;
}

/**
 * Opens `path` for writing after `delaySeconds` and closes it at once (in a shell), so that a
 * reader that blocked on the FIFO — the bug under test — gets end of file and the test fails
 * instead of hanging. `stop()` ends the shell (whether or not it has run) and waits for it.
 */
export function unblockLater(path: string, delaySeconds = 5): { stop(): Promise<void> } {
  const child = new Deno.Command("sh", {
    args: ["-c", `sleep ${delaySeconds}; : > "$1"`, "sh", path],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  return {
    async stop() {
      try {
        child.kill("SIGKILL");
      } catch {
        // it has already exited
      }
      await child.status;
    },
  };
}
