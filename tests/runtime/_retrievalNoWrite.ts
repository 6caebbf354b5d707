/**
 * Run by retrieval_test.ts without --allow-write: computes planted-needle's retrieval profile
 * twice (64-token block) and prints `saved=<bool> computed=<bool>` per call; the profile cannot
 * be written, so both calls compute and one warning goes to stderr.
 *
 * @module
 */
import { Engine } from "../../src/runtime/engine.ts";
import { retrievalProfile } from "../../src/runtime/retrievalProfile.ts";

const engine = await Engine.open(Deno.args[0]);
try {
  for (let i = 0; i < 2; i++) {
    const p = await retrievalProfile(engine, { block: 64 });
    console.log(`saved=${p.saved} computed=${p.computed} top=${p.layers[1].induction[0] > 0.9}`);
  }
} finally {
  engine.close();
}
