/**
 * `deno task run`: generates with a policy applied to the KV cache, streaming text as it comes,
 * then a short summary (or one JSON object with `--json`). Without a prompt flag it runs the
 * built-in needle demo — on models/planted-needle, which retrieves by copying — and says whether
 * the answer came back and how much cache the policy kept.
 *
 * @module
 */

import { compileProgress } from "./compileProgress.ts";
import {
  type ChatMessage,
  chatSpecialTokens,
  endOfTurnIds,
  renderChat,
} from "../model/chatTemplate.ts";
import type { TextTokenizer } from "../model/tokenizer.ts";
import { Engine } from "../runtime/engine.ts";
import { chatDemoPrompt, demoPromptFor } from "./demoPrompt.ts";
import { chatFrame } from "../eval/chatPrompt.ts";
import { checkExecutable } from "../runtime/executable.ts";
import { generateWithPlan } from "../runtime/planGeneration.ts";
import { intFlag, numberFlag, optionalIntFlag, parseFlags } from "./args.ts";
import { UserError } from "./errors.ts";
import { loadPolicy } from "./policyLoader.ts";
import { DEFAULT_MODEL_DIR, DEMO_MODEL_DIR, readPromptIds, readPromptText } from "./prompt.ts";
import { deviceMemoryJson, formatSummary } from "./summary.ts";
import { questionIds, runQuestions } from "./runQuestions.ts";

/** The smallest non-zero `--temperature` and the smallest `--top-p`. */
const MIN_SAMPLING_VALUE = 0.001;
/** The largest `--top-k`: the GPU sampler holds it in a u32 (src/gpu/kernels/sample.ts). */
const MAX_TOP_K = 2 ** 32 - 1;

/** Usage text of `run`. */
export const RUN_USAGE = `usage: deno task run [--policy P] [--model DIR]
                     [--prompt TEXT | --prompt-file F | --prompt-ids 1,2,3
                      | --chat TEXT [--system TEXT]] [--question TEXT ...]
                     [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]
                     [--prefill-chunk N] [--kv-dtype f32|f16] [--json [--trace]]
                     [--allow-plugins] [--plugin FILE]
  no prompt flag: the needle demo (on models/planted-needle unless --model is given);
  prompts run on the default language model, models/tiny-needle; --chat renders the model's
  chat template (e.g. --model models/smollm2-135m-instruct, after deno task setup) and stops at
  the end of the assistant's turn; --question (repeatable) makes the prompt a context that is
  compressed once without the questions, each question then answered from that compressed
  cache (kvpress's query-agnostic protocol)`;

/** Runs `run`; returns the exit code. */
export async function runCommand(args: string[]): Promise<number> {
  const { values: v } = parseFlags("run", args, {
    policy: { type: "string" },
    model: { type: "string" },
    prompt: { type: "string" },
    "prompt-file": { type: "string" },
    "prompt-ids": { type: "string" },
    chat: { type: "string" },
    system: { type: "string" },
    question: { type: "string", multiple: true },
    "max-new-tokens": { type: "string" },
    temperature: { type: "string" },
    "top-k": { type: "string" },
    "top-p": { type: "string" },
    seed: { type: "string" },
    "prefill-chunk": { type: "string" },
    "kv-dtype": { type: "string" },
    json: { type: "boolean" },
    trace: { type: "boolean" },
    "allow-plugins": { type: "boolean" },
    plugin: { type: "string", multiple: true },
    help: { type: "boolean", short: "h" },
  });
  if (v.help) {
    console.log(RUN_USAGE);
    return 0;
  }
  const promptFlags = ["prompt", "prompt-file", "prompt-ids", "chat"].filter((f) =>
    v[f] !== undefined
  );
  if (promptFlags.length > 1) {
    throw new UserError(
      `give one of --prompt, --prompt-file, --prompt-ids, --chat (got ${
        promptFlags.map((f) => `--${f}`).join(", ")
      })`,
    );
  }
  const temperature = numberFlag("temperature", v.temperature, 0);
  const topP = numberFlag("top-p", v["top-p"], 1);
  if (!(temperature === 0 || temperature >= MIN_SAMPLING_VALUE)) {
    throw new UserError(
      `--temperature must be 0 (greedy decoding) or at least ${MIN_SAMPLING_VALUE}, not ` +
        `'${v.temperature}': below that, sampling is greedy in all but name, and tiny values ` +
        "overflow the GPU sampler's 32-bit floats (it divides by T)",
    );
  }
  if (!(topP >= MIN_SAMPLING_VALUE && topP <= 1)) {
    throw new UserError(
      `--top-p must be from ${MIN_SAMPLING_VALUE} to 1, not '${v["top-p"]}': tiny values ` +
        "underflow the GPU sampler's 32-bit floats (for greedy decoding, use --temperature 0)",
    );
  }
  const sampling = {
    temperature,
    // The sampler keeps top-k in a u32 and the seed in two u32 words of a safe integer.
    topK: intFlag("top-k", v["top-k"], 0, 0, MAX_TOP_K),
    topP,
    seed: intFlag("seed", v.seed, 0, 0, Number.MAX_SAFE_INTEGER),
  };
  const kvDtype = (v["kv-dtype"] ?? "f32") as string;
  if (kvDtype !== "f32" && kvDtype !== "f16") throw new UserError("--kv-dtype must be f32 or f16");
  const { plan, registry } = await loadPolicy((v.policy as string | undefined) ?? "full", {
    allowPlugins: v["allow-plugins"] === true,
    plugins: (v.plugin as string[] | undefined) ?? [],
  });
  checkExecutable(plan, registry);
  if (v.system !== undefined && v.chat === undefined) {
    throw new UserError("--system goes with --chat (the system message of a chat prompt)");
  }
  const demo = promptFlags.length === 0;
  const questions = (v.question as string[] | undefined) ?? [];
  if (questions.length > 0 && (demo || v["prompt-ids"] !== undefined)) {
    throw new UserError(
      "--question needs a context as text: give it with --prompt, --prompt-file or --chat",
    );
  }
  const modelDir = (v.model as string | undefined) ?? (demo ? DEMO_MODEL_DIR : DEFAULT_MODEL_DIR);

  const json = v.json === true;
  const showProgress = !json && Deno.stderr.isTerminal();
  let lastPercent = -1;
  const progress = (phase: string, done: number, total: number) => {
    const percent = Math.floor((100 * done) / Math.max(1, total));
    if (!showProgress || percent === lastPercent) return;
    lastPercent = percent;
    Deno.stderr.writeSync(
      new TextEncoder().encode(`\rloading ${modelDir}: ${phase} ${percent}%\x1b[K`),
    );
  };
  const engine = await Engine.open(modelDir, {
    kvDtype,
    onProgress: progress,
    onCompile: compileProgress(),
  });
  try {
    if (showProgress) Deno.stderr.writeSync(new TextEncoder().encode("\r\x1b[K"));
    const tok = engine.tokenizer;
    const load = () => ({
      ms: engine.loadMs,
      weight_bytes: engine.gpu.bytes,
      peak_rss_bytes: peakResidentBytes(),
    });
    if (questions.length > 0) {
      if (!tok) throw new UserError(`${modelDir} has no tokenizer.json: --question needs one`);
      const chat = v.chat !== undefined;
      const context = chat ? v.chat as string : readPromptText(
        v.prompt as string | undefined,
        v["prompt-file"] as string | undefined,
      );
      await runQuestions(engine, plan, registry, {
        questionTexts: questions,
        ids: questionIds(engine, tok, { context, questions, chat, system: v.system as string }),
        maxNewTokens: intFlag("max-new-tokens", v["max-new-tokens"], 64),
        sampling,
        prefillChunk: optionalIntFlag("prefill-chunk", v["prefill-chunk"], 1),
        json,
        trace: v.trace === true,
        jsonFields: () => ({ model: modelDir, load: load() }),
      });
      return 0;
    }
    let promptIds: number[];
    let needle: { key: string; answer: string } | undefined;
    let stopIds = engine.config.eosTokenIds;
    if (v["prompt-ids"] !== undefined) {
      promptIds = readPromptIds(v["prompt-ids"] as string, engine.config.vocabSize);
    } else {
      if (!tok) {
        throw new UserError(
          `${modelDir} has no tokenizer.json: pass token ids with --prompt-ids 1,2,3`,
        );
      }
      if (v.chat !== undefined) {
        const chat = chatPrompt(engine, tok, v.chat as string, v.system as string | undefined);
        promptIds = chat.ids;
        stopIds = chat.stopIds;
      } else if (demo) {
        const d = engine.chat
          ? chatDemoPrompt(tok, chatFrame(engine.chat, chatSpecialTokens(engine.config, tok)))
          : demoPromptFor(tok, modelDir);
        if (engine.chat) stopIds = endOfTurnIds(engine.chat, tok, engine.config.eosTokenIds);
        promptIds = d.ids;
        needle = d;
        if (!json) {
          console.error(
            `demo: a ${d.ids.length}-token haystack hides "The special magic number for ${d.key} is ${d.answer}." at ${
              Math.round(d.depth * 100)
            }% depth; the model is asked for it.`,
          );
        }
      } else {
        promptIds = tok.encode(
          readPromptText(v.prompt as string | undefined, v["prompt-file"] as string | undefined),
        );
      }
    }
    const maxNewTokens = intFlag("max-new-tokens", v["max-new-tokens"], demo ? 12 : 64);
    const stream = tok && !json ? tok.streamDecoder({ skipSpecialTokens: true }) : null;
    const encoder = new TextEncoder();
    const { result, executor } = await generateWithPlan(
      engine,
      plan,
      {
        promptIds,
        maxNewTokens,
        sampling,
        stopIds,
        prefillChunk: optionalIntFlag("prefill-chunk", v["prefill-chunk"], 1),
        onTokens: (ids) => {
          if (!stream) return;
          for (const id of ids) Deno.stdout.writeSync(encoder.encode(stream.push(id)));
        },
      },
      registry,
      true,
    ); // warm up: the printed speeds should not include kernel compilation
    if (stream) Deno.stdout.writeSync(encoder.encode(stream.flush() + "\n"));
    const text = tok ? tok.decode(result.tokens, { skipSpecialTokens: true }) : "";
    const found = needle ? text.includes(needle.answer) : undefined;
    if (json) {
      console.log(JSON.stringify({
        model: modelDir,
        prompt_tokens: promptIds.length,
        text,
        tokens: result.tokens,
        stop_reason: result.stopReason,
        kv: result.kv,
        device_memory: deviceMemoryJson(result),
        timing: result.timing,
        load: load(),
        plan,
        resolved: executor.assignments.map((row) =>
          row.map((a) => ({
            rule: a.rule,
            pipeline: a.pipeline.map((p) => p.name).join(" + ") || "full",
          }))
        ),
        ...(v.trace ? { trace: { layers: executor.trace } } : {}),
        ...(needle ? { demo: { key: needle.key, answer: needle.answer, found } } : {}),
      }));
    } else {
      console.error(formatSummary(promptIds.length, result));
      if (needle) {
        console.error(
          found
            ? `demo: the answer ${needle.answer} came back.`
            : `demo: the answer ${needle.answer} did not come back.`,
        );
      }
    }
    return 0;
  } finally {
    engine.close();
  }
}

/**
 * The process's peak resident memory in bytes (Linux `VmHWM` of /proc/self/status), else the
 * current resident size.
 */
function peakResidentBytes(): number {
  try {
    const match = /^VmHWM:\s+(\d+) kB$/m.exec(Deno.readTextFileSync("/proc/self/status"));
    if (match) return Number(match[1]) * 1024;
  } catch {
    // not Linux, or no read permission: fall back to the current size
  }
  return Deno.memoryUsage().rss;
}

/**
 * The ids of a one-turn chat prompt in the model's own template (`add_generation_prompt`), and
 * the ids that end the assistant's turn.
 */
function chatPrompt(
  engine: Engine,
  tok: TextTokenizer,
  message: string,
  system: string | undefined,
): { ids: number[]; stopIds: number[] } {
  if (message === "") throw new UserError("--chat is empty: give a message");
  if (engine.chat === null) {
    throw new UserError(
      `${engine.weights.dir} has no chat template; use --prompt, or a chat model such as ` +
        "--model models/smollm2-135m-instruct (fetched by deno task setup)",
    );
  }
  const messages: ChatMessage[] = system === undefined ? [] : [{ role: "system", content: system }];
  messages.push({ role: "user", content: message });
  const c = engine.config;
  const text = renderChat(engine.chat, messages, chatSpecialTokens(c, tok));
  return {
    ids: tok.encode(text, { addSpecialTokens: false }),
    stopIds: endOfTurnIds(engine.chat, tok, c.eosTokenIds),
  };
}
