import assert from "node:assert/strict";
import {
  exactNumberMatch,
  firstNumber,
  scoreAnswer,
  stringMatchAll,
  wilsonInterval,
} from "../../src/eval/scoring.ts";

Deno.test("scoring: the needle prediction is the first maximal run of digits", () => {
  assert.equal(firstNumber(" 4839201.</s>"), "4839201");
  assert.equal(firstNumber("The number is 12 and 4839201."), "12");
  assert.equal(firstNumber("no digits"), null);
  assert.equal(exactNumberMatch("4839201.", "4839201"), 1);
  assert.equal(exactNumberMatch(" 4839201.</s>", "4839201"), 1);
  assert.equal(exactNumberMatch("48392011.", "4839201"), 0, "a longer run is not the value");
  assert.equal(exactNumberMatch("483920.", "4839201"), 0);
  assert.equal(exactNumberMatch("5888888.", "4839201"), 0);
  assert.equal(exactNumberMatch("", "4839201"), 0);
});

Deno.test("scoring: string_match_all is the fraction of references found, case-insensitive", () => {
  assert.equal(stringMatchAll("ABCDE, FGHIJ.", ["ABCDE", "FGHIJ"]), 1);
  assert.equal(stringMatchAll("abcde only", ["ABCDE", "FGHIJ"]), 0.5);
  assert.equal(stringMatchAll("1, 2, 3", ["1111111", "2222222", "3333333"]), 0);
  assert.equal(stringMatchAll("1111111, 3333333.", ["1111111", "2222222", "3333333", "333"]), 0.75);
  assert.equal(scoreAnswer("string_match_all", "x 1234567 y", ["1234567"]), 1);
  assert.equal(scoreAnswer("exact_number", "x 1234567 y", ["1234567"]), 1);
  assert.equal(scoreAnswer("exact_number", "7 1234567", ["1234567"]), 0);
});

Deno.test("scoring: 95% Wilson intervals match published values", () => {
  const close = (actual: [number, number], expected: [number, number]) => {
    assert.ok(Math.abs(actual[0] - expected[0]) < 1e-4, `${actual} vs ${expected}`);
    assert.ok(Math.abs(actual[1] - expected[1]) < 1e-4, `${actual} vs ${expected}`);
  };
  close(wilsonInterval(0.5, 10), [0.2366, 0.7634]);
  close(wilsonInterval(0, 10), [0, 0.2775]);
  close(wilsonInterval(1, 10), [0.7225, 1]);
  close(wilsonInterval(0.8, 100), [0.7112, 0.8666]);
  assert.deepEqual(wilsonInterval(0.3, 0), [0, 1]);
});
