/**
 * `fmt` never loses a file: atomic replacement (a full disk leaves the policy as it was), strict
 * UTF-8 with the offending byte's offset, links, BOM, CR line ends, the same file twice, and
 * permission bits — through `deno task fmt`, as users run it.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { decodePolicyBytes, firstInvalidUtf8 } from "../../src/cli/policySource.ts";
import { runDeno, STACK_TRACE } from "./_helpers.ts";

const UNFORMATTED = "else->snap( k=64 )\n";
const FORMATTED = "else -> snap(k=64);\n";

function fmt(...args: string[]) {
  return runDeno(["task", "-q", "fmt", ...args]);
}

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kvpolicy-fmt-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("fmt: a full disk leaves the policy untouched, with a clear error and no stray file", async () => {
  await inTempDir(async (dir) => {
    const mount = new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", "size=8k", "tmpfs", dir],
    });
    const mounted = await mount.output();
    if (!mounted.success) {
      console.warn("SKIP: cannot mount a tmpfs here (needs root); the full-disk case is not run.");
      return;
    }
    try {
      const file = `${dir}/p.kvp`;
      // the policy grows when formatted; filler takes the rest of the disk
      const policy = "layers 0->full;\n" + "#c\n".repeat(200) + "else->snap( k=64 )\n";
      await Deno.writeTextFile(file, policy);
      const filler = await Deno.open(`${dir}/filler`, { write: true, create: true });
      try {
        const chunk = new Uint8Array(512);
        while (true) await filler.write(chunk);
      } catch {
        /* the disk is full */
      } finally {
        filler.close();
      }
      const r = await fmt(file);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stderr, /cannot rewrite .*p\.kvp: .*; it is unchanged/);
      assert.doesNotMatch(r.stderr, STACK_TRACE);
      assert.equal(await Deno.readTextFile(file), policy, "the policy is unchanged");
      const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
      assert.deepEqual(names, ["filler", "p.kvp"], "no temporary file is left behind");
    } finally {
      await new Deno.Command("umount", { args: [dir] }).output();
    }
  });
});

Deno.test("fmt: invalid UTF-8 is refused with its byte offset, and the file is not rewritten", async () => {
  await inTempDir(async (dir) => {
    const file = `${dir}/bad.kvp`;
    const bytes = new Uint8Array([...new TextEncoder().encode("else->snap( k=64 ) # é"), 0xff]);
    await Deno.writeFile(file, bytes);
    const r = await fmt(file);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /bad\.kvp: not valid UTF-8 \(byte 0xff at byte offset 23\)/);
    assert.doesNotMatch(r.stderr, STACK_TRACE);
    assert.deepEqual(await Deno.readFile(file), bytes);
    const check = await runDeno(["task", "-q", "check", file]);
    assert.equal(check.code, 1);
    assert.match(check.stderr, /not valid UTF-8/);
  });
});

Deno.test("fmt: a link keeps pointing at the file it names, which is rewritten with its mode", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/real.kvp`, UNFORMATTED);
    await Deno.chmod(`${dir}/real.kvp`, 0o600);
    await Deno.symlink(`${dir}/real.kvp`, `${dir}/link.kvp`);
    const r = await fmt(`${dir}/link.kvp`);
    assert.equal(r.code, 0, r.stderr);
    assert.ok((await Deno.lstat(`${dir}/link.kvp`)).isSymlink, "the link is still a link");
    assert.equal(await Deno.readTextFile(`${dir}/real.kvp`), FORMATTED);
    assert.equal((await Deno.stat(`${dir}/real.kvp`)).mode! & 0o777, 0o600);
  });
});

Deno.test("fmt: BOM and CR line ends become canonical; the same file twice is fine", async () => {
  await inTempDir(async (dir) => {
    const file = `${dir}/p.kvp`;
    await Deno.writeTextFile(file, "\uFEFFlayers 0 -> full;\r\nelse -> snap(k=64);\r\n");
    const before = await fmt("--check", file);
    assert.equal(before.code, 1, "a BOM or CRLF is not canonical");
    const r = await fmt(file, file);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await Deno.readTextFile(file), "layers 0 -> full;\nelse -> snap(k=64);\n");
    assert.equal((await fmt("--check", file)).code, 0);
    // a BOM alone (canonical text after it) is still rewritten
    await Deno.writeTextFile(file, "\uFEFF" + FORMATTED);
    assert.equal((await fmt("--check", file)).code, 1);
    assert.equal((await fmt(file)).code, 0);
    assert.equal(await Deno.readTextFile(file), FORMATTED);
  });
});

Deno.test("firstInvalidUtf8 agrees with the strict TextDecoder on random and mutated bytes", () => {
  const strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  const valid = (b: Uint8Array) => {
    try {
      strict.decode(b);
      return true;
    } catch {
      return false;
    }
  };
  const bytes = fc.oneof(
    fc.uint8Array({ maxLength: 24 }),
    fc.tuple(
      fc.string({ unit: "grapheme", maxLength: 12 }),
      fc.nat(40),
      fc.integer({ min: 0x80, max: 0xff }),
    )
      .map(([s, at, b]) => {
        const u = new TextEncoder().encode(s);
        if (u.length) u[at % u.length] = b;
        return u;
      }),
  );
  fc.assert(
    fc.property(bytes, (b) => {
      const at = firstInvalidUtf8(b);
      assert.equal(at === -1, valid(b));
      if (at >= 0) {
        assert.ok(valid(b.subarray(0, at)), "everything before the offset decodes");
        assert.throws(() => decodePolicyBytes("p", b), new RegExp(`at byte offset ${at}\\)`));
      }
    }),
    { numRuns: 20000 },
  );
  // hand-worked: overlong, surrogate, above U+10FFFF, truncated, stray continuation
  assert.equal(firstInvalidUtf8(new Uint8Array([0x41, 0xc0, 0x80])), 1);
  assert.equal(firstInvalidUtf8(new Uint8Array([0xed, 0xa0, 0x80])), 0);
  assert.equal(firstInvalidUtf8(new Uint8Array([0xf4, 0x90, 0x80, 0x80])), 0);
  assert.equal(firstInvalidUtf8(new Uint8Array([0x61, 0xe2, 0x82])), 1);
  assert.equal(firstInvalidUtf8(new Uint8Array([0x61, 0x80])), 1);
  assert.equal(firstInvalidUtf8(new TextEncoder().encode("é€𝄞")), -1);
});
