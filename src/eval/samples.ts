/**
 * Builds every sample a suite asks for, task by task, before any policy runs.
 *
 * @module
 */

import type { TextTokenizer } from "../model/tokenizer.ts";
import type { ChatFrame } from "./chatPrompt.ts";
import { buildHitRateSamples } from "./hitRate.ts";
import { type EvalSample, taskContext } from "./sample.ts";
import type { EvalSuite, TaskName } from "./suite.ts";
import { buildMultiKeySamples } from "./tasks/multiKey.ts";
import { buildMultiValueSamples } from "./tasks/multiValue.ts";
import { buildNeedleSamples, buildSingleKeySamples } from "./tasks/needle.ts";
import { buildPerplexitySamples } from "./tasks/perplexity.ts";
import { buildVariableTrackingSamples } from "./tasks/variableTracking.ts";

/**
 * The samples of one task. A suite with `chat` needs the model's chat frame (`chat`); without
 * `chat` the frame is not used.
 */
export function buildTaskSamples(
  tokenizer: TextTokenizer,
  suite: EvalSuite,
  task: TaskName,
  chat: ChatFrame | null = null,
): EvalSample[] {
  if (suite.chat && chat === null) {
    throw new Error("a suite with chat prompts needs the model's chat frame");
  }
  const context = taskContext(tokenizer, suite.chat ? chat : null);
  switch (task) {
    case "needle":
      return buildNeedleSamples(context, suite);
    case "single_key":
      return buildSingleKeySamples(context, suite);
    case "multi_key":
      return buildMultiKeySamples(context, suite);
    case "multi_value":
      return buildMultiValueSamples(context, suite);
    case "variable_tracking":
      return buildVariableTrackingSamples(context, suite);
    case "ppl":
      return buildPerplexitySamples(context, suite);
    case "hitrate":
      return buildHitRateSamples(context, suite);
  }
}

/** Every sample of the suite, in task order. Deterministic: same suite ⇒ same samples. */
export function buildSuiteSamples(
  tokenizer: TextTokenizer,
  suite: EvalSuite,
  chat: ChatFrame | null = null,
): EvalSample[] {
  return suite.tasks.flatMap((task) => buildTaskSamples(tokenizer, suite, task, chat));
}
