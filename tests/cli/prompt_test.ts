/**
 * `--prompt-file` reads only a regular file of at most 64 MiB: /dev/zero, a FIFO, a folder or a
 * huge file is a one-line user error, never an endless read or a hang.
 */
import assert from "node:assert/strict";
import { UserError } from "../../src/cli/errors.ts";
import { readPromptText } from "../../src/cli/prompt.ts";
import { fifoTestName, HAS_DEV_ZERO, makeFifo, unblockLater } from "../model/_specialFiles.ts";

function assertUserError(file: string, message: string): void {
  assert.throws(() => readPromptText(undefined, file), (e: unknown) => {
    assert.ok(e instanceof UserError, `expected a UserError, got ${e}`);
    assert.equal(e.message, message);
    return true;
  });
}

Deno.test({
  name: "--prompt-file /dev/zero is refused",
  ignore: !HAS_DEV_ZERO,
  fn() {
    assertUserError(
      "/dev/zero",
      "--prompt-file: /dev/zero: not a regular file (a character device); a prompt file must be one",
    );
  },
});

Deno.test("--prompt-file: a folder, a FIFO, a huge file and a missing file are refused", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    assertUserError(
      dir,
      `--prompt-file: ${dir}: not a regular file (a directory); a prompt file must be one`,
    );
    const huge = `${dir}/huge.txt`;
    await Deno.writeTextFile(huge, "");
    await Deno.truncate(huge, 64 * 1024 * 1024 + 1); // sparse: no disk space used
    assertUserError(
      huge,
      `--prompt-file: ${huge}: too large (67108865 bytes; the limit for a prompt file is 64 MiB)`,
    );
    assertUserError(`${dir}/missing.txt`, `--prompt-file: ${dir}/missing.txt: not found`);
    const fifo = `${dir}/fifo.txt`;
    const made = await makeFifo(fifo);
    await t.step({
      name: fifoTestName("FIFO", made),
      ignore: !made,
      fn: async () => {
        const writer = unblockLater(fifo); // the old synchronous read blocked the whole process
        try {
          assertUserError(
            fifo,
            `--prompt-file: ${fifo}: not a regular file (a FIFO); a prompt file must be one`,
          );
        } finally {
          await writer.stop();
        }
      },
    });
    const ok = `${dir}/prompt.txt`;
    await Deno.writeTextFile(ok, "Tara asked Marco");
    assert.equal(readPromptText(undefined, ok), "Tara asked Marco");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
