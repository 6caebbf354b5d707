import assert from "node:assert/strict";
import { tensorToFloat32 } from "../../src/model/dtype.ts";
import { ModelError } from "../../src/model/errors.ts";
import {
  readCheckpointTensors,
  readSafetensors,
  readSafetensorsHeader,
} from "../../src/model/safetensors.ts";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";
import { type BuildOptions, buildSafetensors, f32Tensor, zeroTensor } from "./safetensorsWriter.ts";

const GOOD_TENSORS = [f32Tensor("a", [2, 3]), zeroTensor("b", "BF16", [4]), f32Tensor("c", [5])];

/** Runs `fn` with a fresh temporary folder, removed afterwards. */
async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kvpolicy-safetensors-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Writes `bytes` to `dir/model.safetensors` and expects reading it to fail with `pattern`. */
async function expectRejected(bytes: Uint8Array, pattern: RegExp): Promise<void> {
  await withTempDir(async (dir) => {
    const file = `${dir}/model.safetensors`;
    await Deno.writeFile(file, bytes);
    await assert.rejects(() => readSafetensors(file), (error: unknown) => {
      assert.ok(error instanceof ModelError, `expected ModelError, got ${error}`);
      assert.ok(error.message.startsWith(`${file}: `), error.message);
      assert.match(error.message, pattern);
      return true;
    });
  });
}

function bad(opts: BuildOptions): Uint8Array {
  return buildSafetensors(GOOD_TENSORS, opts);
}

Deno.test("safetensors: round trip of a well-formed file", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/model.safetensors`;
    await Deno.writeFile(file, buildSafetensors(GOOD_TENSORS));
    const tensors = await readSafetensors(file);
    assert.deepEqual([...tensors.keys()], ["a", "b", "c"]);
    assert.deepEqual(tensors.get("a")!.shape, [2, 3]);
    assert.equal(tensors.get("b")!.dtype, "BF16");
    assert.deepEqual([...tensorToFloat32(tensors.get("a")!)], [1, 2, 3, 4, 5, 6]);
    assert.deepEqual([...tensorToFloat32(tensors.get("c")!)], [1, 2, 3, 4, 5]);
    const header = await readSafetensorsHeader(file);
    assert.equal(header.dataStart % 8, 0);
  });
});

Deno.test("safetensors: truncated files", async () => {
  const good = buildSafetensors(GOOD_TENSORS);
  await expectRejected(good.subarray(0, 5), /truncated safetensors file \(5 bytes/);
  await expectRejected(
    good.subarray(0, 40),
    /header length \d+ exceeds the file size \(40 bytes\)/,
  );
  // Header intact, data cut short: the last tensor's offsets now lie outside the data section.
  await expectRejected(
    good.subarray(0, good.byteLength - 4),
    /tensor "c": data_offsets \[\d+, \d+\] lie outside the data section/,
  );
});

Deno.test("safetensors: header length beyond the file or the cap", async () => {
  await expectRejected(bad({ headerLength: 1n << 40n }), /header length 1099511627776 exceeds/);
  await expectRejected(bad({ headerLength: (1n << 64n) - 1n }), /exceeds the file size/);
  await expectRejected(bad({ headerLength: 0n }), /safetensors header is empty/);
});

Deno.test("safetensors: header that is not JSON", async () => {
  await expectRejected(bad({ headerLength: 16n }), /header is not valid UTF-8 JSON/);
  await expectRejected(
    bad({ editHeader: (h) => Object.assign(h, { x: [1] }) }),
    /tensor "x": header entry must be an object/,
  );
});

Deno.test("safetensors: unsupported dtype names the tensor", async () => {
  await expectRejected(
    bad({ editHeader: (h) => (h.a.dtype = "I64") }),
    /tensor "a" has dtype "I64"; only F32, F16 and BF16 are supported/,
  );
});

Deno.test("safetensors: bad shapes and offsets", async () => {
  await expectRejected(
    bad({ editHeader: (h) => (h.a.shape = [2, -3]) }),
    /tensor "a": "shape" must be a list of non-negative integers/,
  );
  await expectRejected(
    bad({ editHeader: (h) => (h.a.shape = [2, 1.5]) }),
    /tensor "a": "shape" must be a list/,
  );
  await expectRejected(
    bad({ editHeader: (h) => (h.a.shape = [3, 3]) }),
    /tensor "a": data_offsets span 24 bytes but shape \[3, 3\] of F32 needs 36/,
  );
  await expectRejected(
    bad({ editHeader: (h) => (h.c.data_offsets = [32, 1000]) }),
    /tensor "c": data_offsets \[32, 1000\] lie outside the data section \(52 bytes\)/,
  );
  await expectRejected(
    bad({ editHeader: (h) => (h.a.data_offsets = [24, 0]) }),
    /tensor "a": data_offsets \[24, 0\] lie outside/,
  );
  await expectRejected(
    bad({ editHeader: (h) => (h.a.data_offsets = [0]) }),
    /tensor "a": "data_offsets" must be two non-negative integers/,
  );
  await expectRejected(
    bad({ editHeader: (h) => (h.a.shape = [2 ** 40, 2 ** 20]) }),
    /tensor "a": "shape" is too large/,
  );
});

Deno.test("safetensors: overlapping tensors", async () => {
  await expectRejected(
    bad({ editHeader: (h) => (h.b.data_offsets = [16, 24]) }),
    /tensors "a" \[0, 24\] and "b" \[16, 24\] overlap/,
  );
});

Deno.test("safetensors: zero-size tensors are fine anywhere", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/model.safetensors`;
    await Deno.writeFile(file, buildSafetensors([f32Tensor("a", [2]), f32Tensor("empty", [0, 4])]));
    const tensors = await readSafetensors(file);
    assert.equal(tensors.get("empty")!.data.byteLength, 0);
  });
});

Deno.test("safetensors: a folder without weights", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(
      () => readCheckpointTensors(dir),
      (error: unknown) =>
        error instanceof ModelError &&
        error.message ===
          `${dir}: no model.safetensors or model.safetensors.index.json in the model folder`,
    );
  });
});

Deno.test("safetensors: sharded checkpoints through the index", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeFile(`${dir}/one.safetensors`, buildSafetensors([f32Tensor("a", [2])]));
    await Deno.writeFile(
      `${dir}/two.safetensors`,
      buildSafetensors([f32Tensor("b", [3], 2), f32Tensor("unlisted", [1])]),
    );
    const writeIndex = (weightMap: Record<string, string>) =>
      Deno.writeTextFile(
        `${dir}/model.safetensors.index.json`,
        JSON.stringify({ metadata: {}, weight_map: weightMap }),
      );
    const index = `${dir}/model.safetensors.index.json`;

    await writeIndex({ a: "one.safetensors", b: "two.safetensors" });
    const progress: [number, number][] = [];
    const tensors = await readCheckpointTensors(dir, (done, total) => progress.push([done, total]));
    assert.deepEqual([...tensors.keys()].sort(), ["a", "b"]);
    assert.deepEqual([...tensorToFloat32(tensors.get("b")!)], [2, 4, 6]);
    assert.deepEqual(progress.at(-1), [20, 20]);

    await writeIndex({ a: "one.safetensors", b: "three.safetensors" });
    await assert.rejects(
      () => readCheckpointTensors(dir),
      (error: unknown) =>
        error instanceof ModelError &&
        error.message ===
          `${index}: shard "three.safetensors" (holding "b") is missing from the folder`,
    );

    await writeIndex({ a: "one.safetensors", c: "two.safetensors" });
    await assert.rejects(
      () => readCheckpointTensors(dir),
      (error: unknown) =>
        error instanceof ModelError &&
        error.message ===
          `${dir}/two.safetensors: tensor "c" is listed in model.safetensors.index.json but ` +
            `absent from this shard`,
    );

    await writeIndex({ a: "../one.safetensors" });
    await assert.rejects(
      () => readCheckpointTensors(dir),
      (error: unknown) => error instanceof ModelError && /must be a file name/.test(error.message),
    );

    await Deno.writeTextFile(index, JSON.stringify({ weights: {} }));
    await assert.rejects(
      () => readCheckpointTensors(dir),
      (error: unknown) =>
        error instanceof ModelError && /"weight_map" must be an object/.test(error.message),
    );
  });
});

Deno.test({
  name: "safetensors: the sharded bf16 fixture splits layer 1 across shards",
  ignore: sharedMissing(),
  async fn() {
    const dir = `${SHARED_DIR}/fixtures/llama-bf16-sharded`;
    const index = JSON.parse(await Deno.readTextFile(`${dir}/model.safetensors.index.json`));
    const tensors = await readCheckpointTensors(dir);
    assert.equal(tensors.size, Object.keys(index.weight_map).length);
    let totalBytes = 0;
    for (const tensor of tensors.values()) {
      assert.equal(tensor.dtype, "BF16");
      totalBytes += tensor.data.byteLength;
    }
    assert.equal(totalBytes, index.metadata.total_size);
  },
});
