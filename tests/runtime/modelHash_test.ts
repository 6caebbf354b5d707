/**
 * The retrieval profile's model identity and location for a GGUF file (no GPU): the hash covers
 * the file's size, its first 4 MiB and its last 64 KiB; the profile lives beside the file, or in
 * the cache folder. A Hugging Face folder keeps `<dir>/kvpolicy-retrieval.yaml`.
 */
import assert from "node:assert/strict";
import { hashDescription, modelHash } from "../../src/runtime/modelHash.ts";
import {
  defaultCacheDir,
  formatProfile,
  PROFILE_FILE,
  profilePath,
  shippedProfilePath,
} from "../../src/runtime/retrievalProfile.ts";

const MIB = 1024 * 1024;

Deno.test("model hash of a GGUF: size, first 4 MiB and last 64 KiB; the middle is not read", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kvpolicy-hash-" });
  try {
    const file = `${dir}/m.gguf`;
    const bytes = new Uint8Array(6 * MIB).map((_, i) => (i * 31) & 0xff);
    await Deno.writeFile(file, bytes);
    const base = await modelHash(file);
    assert.match(base, /^[0-9a-f]{64}$/);
    assert.equal(await modelHash(file), base, "deterministic");
    const edit = async (at: number) => {
      const copy = bytes.slice();
      copy[at] ^= 1;
      await Deno.writeFile(file, copy);
      return await modelHash(file);
    };
    assert.notEqual(await edit(100), base, "a header byte");
    assert.notEqual(await edit(bytes.length - 10), base, "a byte of the last tensor");
    assert.equal(await edit(5 * MIB), base, "the middle is skipped");
    await Deno.writeFile(file, bytes.subarray(0, 1000));
    assert.notEqual(await modelHash(file), base, "a smaller file");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("profile paths: computed ones in the cache folder, shipped ones beside the model", () => {
  const hash = "0123456789abcdef".repeat(4);
  assert.equal(shippedProfilePath("/m/x.Q4_1.gguf"), `/m/x.Q4_1.gguf.${PROFILE_FILE}`);
  assert.equal(shippedProfilePath("/m/llama"), `/m/llama/${PROFILE_FILE}`);
  assert.equal(profilePath(hash, "/cache"), "/cache/kvpolicy-retrieval-0123456789abcdef.yaml");
  assert.ok(profilePath(hash).startsWith(defaultCacheDir() + "/"));
  assert.match(hashDescription("/m/x.gguf"), /GGUF file's size, first 4 MiB and last 64 KiB/);
  assert.match(hashDescription("/m/llama"), /config\.json \+ per \*\.safetensors/);
  const scores = {
    layers: [],
    queryHeads: [],
    probe: { seed: 0, block: 4, blockCap: null, offset: 1, length: 17 },
    modelHash: hash,
  };
  assert.match(formatProfile(scores, hashDescription("/m/x.gguf")), /hash_of: .*GGUF file's size/);
  assert.match(formatProfile(scores), /hash_of: .*config\.json/);
});
