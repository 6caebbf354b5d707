/** The bridge's own Python tests (python/tests, pytest), run under kvpress's interpreter. */

import assert from "node:assert/strict";
import { kvpressMissing, runBridge } from "./_kvpress.ts";

Deno.test({
  name: "python/tests: the kvpolicy_kvpress bridge's pytest suite passes",
  ignore: kvpressMissing("the bridge's pytest suite"),
  async fn() {
    const r = await runBridge(["-m", "pytest", "-q", "-p", "no:cacheprovider", "python/tests"]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /\d+ passed/);
    assert.doesNotMatch(r.stdout, /skipped|xfail/);
  },
});
