/** Flag parsing: stray positional arguments and integer ranges. */
import assert from "node:assert/strict";
import { intFlag, parseFlags } from "../../src/cli/args.ts";
import { UserError } from "../../src/cli/errors.ts";

function userError(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof UserError && message.test(e.message));
}

Deno.test("parseFlags: commands without positional arguments refuse one", () => {
  const options = { policy: { type: "string" as const } };
  for (const command of ["run", "eval", "inspect", "bench"]) {
    userError(
      () => parseFlags(command, ["--policy", "full", "snapkv"], options),
      new RegExp(`^${command}: unexpected argument 'snapkv'; ${command} takes only flags`),
    );
  }
  userError(
    () => parseFlags("run", ["layers lazy -> full; else -> snap(k=64)"], options),
    /pass it with --policy 'layers lazy -> full; else -> snap\(k=64\)'$/,
  );
});

Deno.test("parseFlags: check and fmt still take policy files", () => {
  for (const command of ["check", "fmt"]) {
    const r = parseFlags(command, ["a.kvp", "--plan", "b.kvp"], { plan: { type: "boolean" } });
    assert.deepEqual(r.positionals, ["a.kvp", "b.kvp"]);
    assert.equal(r.values.plan, true);
  }
});

Deno.test("intFlag: integers past the range, or past 2^53 - 1, are refused", () => {
  assert.equal(intFlag("n", "4294967295", 0, 0, 2 ** 32 - 1), 2 ** 32 - 1);
  userError(() => intFlag("n", "4294967296", 0, 0, 2 ** 32 - 1), /from 0 to 4294967295/);
  assert.equal(intFlag("n", "9007199254740991", 0), Number.MAX_SAFE_INTEGER);
  userError(() => intFlag("n", "9007199254740993", 0), /from 0 to 9007199254740991/);
  userError(() => intFlag("n", "-1", 0), /--n expects an integer ≥ 0, not '-1'/);
});
