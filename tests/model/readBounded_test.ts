/**
 * Model files are read only from regular files, and only up to a cap: a `config.json` or
 * tokenizer file that is a link to /dev/zero, a FIFO, a folder or a huge file is a clear
 * ModelError, never an endless read or a hang.
 */
import assert from "node:assert/strict";
import { loadConfig } from "../../src/model/config.ts";
import { ModelError } from "../../src/model/errors.ts";
import { readBoundedFile } from "../../src/model/readBounded.ts";
import { loadTokenizer } from "../../src/model/tokenizer.ts";
import { readModelHeader } from "../../src/model/openModel.ts";
import { exists, fifoTestName, HAS_DEV_ZERO, makeFifo, unblockLater } from "./_specialFiles.ts";

/** Runs `fn` with a fresh temporary folder. */
async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function assertModelError(promise: Promise<unknown>, message: string): Promise<void> {
  await assert.rejects(promise, (e: unknown) => {
    assert.ok(e instanceof ModelError, `expected a ModelError, got ${e}`);
    assert.ok(e.message.includes(message), e.message);
    return true;
  });
}

/** A sparse file of `bytes` bytes (no disk space used). */
async function sparseFile(path: string, bytes: number): Promise<void> {
  await Deno.writeFile(path, new Uint8Array());
  await Deno.truncate(path, bytes);
}

Deno.test({
  name: "config.json and tokenizer files that link to /dev/zero are refused",
  ignore: !HAS_DEV_ZERO,
  fn: () =>
    inTempDir(async (dir) => {
      await Deno.symlink("/dev/zero", `${dir}/config.json`);
      await assertModelError(
        loadConfig(dir),
        `${dir}/config.json: not a regular file (a character device)`,
      );
      await Deno.symlink("/dev/zero", `${dir}/tokenizer.json`);
      await assertModelError(
        loadTokenizer(dir),
        `${dir}/tokenizer.json: not a regular file (a character device)`,
      );
      await Deno.remove(`${dir}/tokenizer.json`);
      await Deno.writeTextFile(`${dir}/tokenizer.json`, "{}");
      await Deno.symlink("/dev/zero", `${dir}/tokenizer_config.json`);
      await assertModelError(
        loadTokenizer(dir),
        `${dir}/tokenizer_config.json: not a regular file (a character device)`,
      );
    }),
});

Deno.test("a FIFO config.json or tokenizer.json is refused without hanging", async (t) => {
  await inTempDir(async (dir) => {
    const made = await makeFifo(`${dir}/config.json`);
    if (made) await makeFifo(`${dir}/tokenizer.json`);
    await t.step({
      name: fifoTestName("FIFO", made),
      ignore: !made,
      fn: async () => {
        const config = unblockLater(`${dir}/config.json`);
        const tokenizer = unblockLater(`${dir}/tokenizer.json`);
        try {
          await assertModelError(
            loadConfig(dir),
            `${dir}/config.json: not a regular file (a FIFO)`,
          );
          await assertModelError(
            loadTokenizer(dir),
            `${dir}/tokenizer.json: not a regular file (a FIFO)`,
          );
        } finally {
          await config.stop();
          await tokenizer.stop();
        }
      },
    });
  });
});

Deno.test("a folder named config.json is refused", () =>
  inTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/config.json`);
    await assertModelError(loadConfig(dir), `${dir}/config.json: not a regular file (a directory)`);
  }));

Deno.test("files over their cap are refused before they are read, naming the cap", () =>
  inTempDir(async (dir) => {
    await sparseFile(`${dir}/config.json`, 2 * 1024 * 1024);
    await assertModelError(
      loadConfig(dir),
      `${dir}/config.json: too large (2097152 bytes; the limit for a config.json is 1 MiB)`,
    );
    await sparseFile(`${dir}/tokenizer.json`, 65 * 1024 * 1024);
    await assertModelError(
      loadTokenizer(dir),
      `${dir}/tokenizer.json: too large (68157440 bytes; the limit for a tokenizer.json is 64 MiB)`,
    );
  }));

// Deno lets only --allow-all read /proc; without it this test is skipped, saying so.
const HAS_PROC = exists("/proc/self/status", (i) => i.isFile);
Deno.test({
  name: "readBoundedFile stops at the cap when a file's size says nothing (/proc)" +
    (HAS_PROC ? "" : " (skipped: reading /proc needs --allow-all)"),
  ignore: !HAS_PROC,
  async fn() {
    const status = "/proc/self/status"; // reports size 0, holds about 1 KiB
    const text = new TextDecoder().decode(await readBoundedFile(status, 65536, "a status file"));
    assert.match(text, /^Name:/);
    await assertModelError(
      readBoundedFile(status, 16, "a status file"),
      `${status}: too large (the limit for a status file is 16 bytes)`,
    );
  },
});

Deno.test("a missing file is Deno's NotFound, for the caller to handle", async () => {
  await assert.rejects(
    readBoundedFile("/nonexistent-kvpolicy/config.json", 1024, "a config.json"),
    Deno.errors.NotFound,
  );
  await inTempDir(async (dir) => {
    await assertModelError(loadConfig(dir), "config.json: not found");
    assert.equal(await loadTokenizer(dir), null);
  });
});

Deno.test("chat templates are read bounded, as regular files, as strict UTF-8", async (t) => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/config.json`,
      JSON.stringify({
        model_type: "llama",
        hidden_size: 64,
        intermediate_size: 128,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        num_hidden_layers: 1,
        vocab_size: 32,
        max_position_embeddings: 128,
        rms_norm_eps: 1e-5,
      }),
    );
    const header = () => readModelHeader({ format: "hf", path: dir });
    await t.step("a chat_template.jinja over 1 MiB", async () => {
      await sparseFile(`${dir}/chat_template.jinja`, 2 * 1024 * 1024);
      await assertModelError(header(), `${dir}/chat_template.jinja: `);
      await assertModelError(header(), "1 MiB");
    });
    await t.step("a chat_template.jinja with invalid UTF-8", async () => {
      await Deno.writeFile(`${dir}/chat_template.jinja`, Uint8Array.of(0x7b, 0x7b, 0xff, 0x7d));
      await assertModelError(header(), `${dir}/chat_template.jinja: not valid UTF-8`);
    });
    await t.step({
      name: "a tokenizer_config.json linking to /dev/zero",
      ignore: !HAS_DEV_ZERO,
      fn: async () => {
        await Deno.remove(`${dir}/chat_template.jinja`);
        await Deno.symlink("/dev/zero", `${dir}/tokenizer_config.json`);
        await assertModelError(
          header(),
          `${dir}/tokenizer_config.json: not a regular file (a character device)`,
        );
        await Deno.remove(`${dir}/tokenizer_config.json`);
      },
    });
    const made = await makeFifo(`${dir}/chat_template.jinja`);
    await t.step({
      name: fifoTestName("a FIFO chat_template.jinja", made),
      ignore: !made,
      fn: async () => {
        const unblock = unblockLater(`${dir}/chat_template.jinja`);
        try {
          await assertModelError(
            header(),
            `${dir}/chat_template.jinja: not a regular file (a FIFO)`,
          );
        } finally {
          await unblock.stop();
        }
      },
    });
  });
});
