/**
 * `deno task eval`: compares policies on needle / RULER-style / perplexity / hit-rate tasks.
 * The runtime is injected ({@link EvalCommandDeps.openEngine}), so this file only parses flags,
 * assembles the suite and the policies, runs them and writes the table, JSON and HTML report.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { intFlag, parseFlags } from "./args.ts";
import { UserError } from "./errors.ts";
import { prepareOutputDir, writeOutput } from "./outputs.ts";
import { readPolicySource } from "./policySource.ts";
import { compileOrThrow } from "../plan/compile.ts";
import type { EvalEngine } from "../eval/engine.ts";
import { ModelError } from "../model/errors.ts";
import { decodeUtf8, readBoundedFileSync, SUITE_FILE_LIMIT } from "../model/readBounded.ts";
import {
  locateModel,
  type ModelHeader,
  type ModelLocation,
  readModelHeader,
} from "../model/openModel.ts";
import { checkGridSize, MAX_SAMPLES, parseDepths, parseLengths } from "../eval/gridSpec.ts";
import { ProgressLine, type ProgressSink, stderrSink } from "../eval/progress.ts";
import { renderHtmlReport } from "../eval/report/html.ts";
import { reportToJson } from "../eval/report/json.ts";
import { renderSummaryTable } from "../eval/report/table.ts";
import { type EvalPolicy, runEval } from "../eval/runner.ts";
import {
  LEADERBOARD_ALL_METHODS,
  LEADERBOARD_RATIOS,
  leaderboardPoints,
  leaderboardPolicies,
  type LeaderboardPolicy,
} from "../eval/leaderboard.ts";
import { checkpointHeader, openCheckpoint } from "../eval/checkpoint.ts";
import {
  defaultSuite,
  type EvalSuite,
  modelKindOf,
  parseSuiteYaml,
  parseTaskList,
} from "../eval/suite.ts";

/** Usage text of `eval`. */
export const EVAL_USAGE =
  `usage: deno task eval --policy P [--policy Q ...] [--task needle|ruler|ppl|hitrate ...]
                      [--model M] [--lengths 1k,2k,4k] [--depths 0:100:10] [--samples N]
                      [--seed S] [--suite FILE.yaml] [--chat] [--protocol aware|agnostic|both]
                      [--out DIR [--resume]] [--json]
                      [--leaderboard [--methods M,...] [--ratios 0.25,0.5,0.75,0.875]]
  --policy P    a .kvp file, a shipped policy name (snapkv) or inline text; repeat to compare
  --task T      needle, ruler (single_key, multi_key, multi_value, variable_tracking), ppl,
                hitrate, or one RULER task by name; repeatable or comma-separated
  --model M     a Hugging Face model folder, a .gguf file or a folder holding one (default:
                models/planted-needle for --task needle alone, models/tiny-needle otherwise);
                a GGUF gets RULER's natural-language templates
  --lengths L   context lengths in tokens, k = 1024 (default: the suite's)
  --depths D    needle depths in percent, start:stop:step or a list (default 0:100:10)
  --samples N   samples per cell          --seed S   base seed of every prompt
  --suite FILE  a suite YAML file (templates, tasks, grid; see docs/EVAL.md)
  --chat        wrap prompts in the model's chat template (instruct models): the haystack and
                question are the user's message, the answer prefix opens the assistant's turn
  --protocol P  aware (default): the question ends the compressed prompt; agnostic (kvpress's
                default): the context is compressed without it and the question appended to
                the compressed cache; both: every policy twice, named "P [aware]" and
                "P [agnostic]" (perplexity and hit rate run aware only)
  --out DIR     write DIR/report.html (self-contained) and DIR/results.json; every answer is
                also checkpointed to DIR/outcomes.jsonl as it comes
  --resume      take the answers already in DIR/outcomes.jsonl (same model and suite) instead of
                computing them again: an interrupted run goes on where it stopped
  --leaderboard kvpress's leaderboard protocol: every method (--methods; default all) at each
                compression ratio (--ratios, the fraction removed; default 0.25,0.5,0.75,0.875)
                and the full cache (DMS thresholds and KIVI bits at their own settings, each
                plotted at the ratio it reached), under both protocols unless --protocol says
                otherwise; the table, JSON and HTML report add score against ratio per protocol
  --json        print the results as JSON instead of the table`;

/** What `eval` needs from outside: the runtime, and where output goes. */
export interface EvalCommandDeps {
  /**
   * Opens the runtime for a model: a Hugging Face folder or a GGUF file, as `locateModel` resolved
   * it (the CLI passes the WebGPU engine's factory).
   */
  openEngine(modelPath: string): Promise<EvalEngine>;
  /** Prints results (default `console.log`). */
  print?: (text: string) => void;
  /** Where progress goes (default standard error). */
  progress?: ProgressSink;
}

/** The model folder used when `--model` is not given (the default language model). */
export const DEFAULT_MODEL_DIR: string = fileURLToPath(
  new URL("../../models/tiny-needle", import.meta.url),
);

/** The model of the needle task when `--model` is not given: it retrieves by copying. */
export const NEEDLE_MODEL_DIR: string = fileURLToPath(
  new URL("../../models/planted-needle", import.meta.url),
);

/** `--task needle` alone (or no task and no suite) runs on planted-needle; the rest on tiny-needle. */
function defaultModelFor(values: Record<string, unknown>): string {
  if (typeof values.suite === "string") return DEFAULT_MODEL_DIR;
  const tasks = values.task === undefined ? ["needle"] : parseTaskList(values.task as string[]);
  return tasks.every((t) => t === "needle") ? NEEDLE_MODEL_DIR : DEFAULT_MODEL_DIR;
}

function readSuite(values: Record<string, unknown>, modelPath: string): EvalSuite {
  let suite = defaultSuite(modelKindOf(modelPath));
  const file = values.suite;
  if (typeof file === "string") {
    let text: string;
    try {
      text = decodeUtf8(readBoundedFileSync(file, SUITE_FILE_LIMIT, "a suite file"), file);
    } catch (e) {
      if (e instanceof ModelError) throw new UserError(e.message);
      throw new UserError(`cannot read suite '${file}': ${(e as Error).message}`);
    }
    suite = parseSuiteYaml(text, file, suite);
  }
  if (Array.isArray(values.task)) suite.tasks = parseTaskList(values.task as string[]);
  if (typeof values.lengths === "string") suite.lengths = parseLengths(values.lengths);
  if (typeof values.depths === "string") suite.depths = parseDepths(values.depths);
  suite.samples = intFlag(
    "samples",
    values.samples as string | undefined,
    suite.samples,
    1,
    MAX_SAMPLES,
  );
  suite.seed = intFlag("seed", values.seed as string | undefined, suite.seed, 0);
  if (values.chat === true) suite.chat = true;
  const pplText = suite.perplexity.text;
  if (pplText !== undefined && suite.tasks.includes("ppl")) checkReadable(pplText, String(file));
  return suite;
}

/** A suite's `ppl.text` is checked before the model opens (the samples read it later). */
function checkReadable(path: string, suiteFile: string): void {
  let isFile = false;
  try {
    isFile = Deno.statSync(path).isFile;
  } catch (e) {
    throw new UserError(`${suiteFile}: ppl.text: cannot read '${path}': ${(e as Error).message}`);
  }
  if (!isFile) throw new UserError(`${suiteFile}: ppl.text: '${path}' is not a file`);
}

/** Reads and compiles every `--policy`, naming each by `policy "name"`, its file, or its rules. */
export function readPolicies(args: string[]): EvalPolicy[] {
  if (args.length === 0) throw new UserError(`eval: no --policy given\n${EVAL_USAGE}`);
  const taken = new Set<string>();
  return args.map((arg, i) => {
    const source = readPolicySource(arg);
    const plan = compileOrThrow(source.text, source.file);
    if (plan.uses.length) {
      throw new UserError(
        `${source.file}: eval does not load plugin code ('use'); remove it to evaluate`,
      );
    }
    const fromFile = source.inline ? null : source.file.split("/").at(-1)!.replace(/\.kvp$/, "");
    // Inline text is named by its rules, e.g. `snap(k=64, pool=21)` for `else -> snap(...)`.
    const inlineName = source.inline
      ? plan.rules.map((r) => r.isElse ? r.text.replace(/^else -> /, "") : r.text).join("; ")
      : null;
    let name = plan.name ?? fromFile ?? inlineName ?? `policy${i + 1}`;
    for (let k = 2; taken.has(name); k++) name = `${plan.name ?? fromFile ?? "policy"}#${k}`;
    taken.add(name);
    return { name, source: source.text, plan, file: source.file };
  });
}

/**
 * The policies under `--protocol`: each once (`aware`, `agnostic`), or twice (`both`, the
 * protocol appended to its name).
 */
export function withProtocols(policies: EvalPolicy[], protocol: string): EvalPolicy[] {
  if (protocol === "aware" || protocol === "agnostic") {
    return policies.map((p) => ({ ...p, protocol }));
  }
  if (protocol !== "both") {
    throw new UserError(`--protocol must be aware, agnostic or both, not '${protocol}'`);
  }
  return policies.flatMap((p) =>
    (["aware", "agnostic"] as const).map((protocol) => ({
      ...p,
      name: `${p.name} [${protocol}]`,
      protocol,
    }))
  );
}

/** `--model` resolved: a Hugging Face folder or a GGUF file; a user error otherwise. */
async function locateModelFlag(path: string): Promise<ModelLocation> {
  try {
    return await locateModel(path);
  } catch (e) {
    if (!(e instanceof ModelError)) throw e;
    const reason = e.message.startsWith(`${path}: `) ? e.message.slice(path.length + 2) : e.message;
    throw new UserError(
      `--model: '${path}' is not a model folder or GGUF file (${reason})`,
    );
  }
}

/** Checks the suite against the model's header before any weights load. */
function checkSuiteFitsModel(header: ModelHeader, suite: EvalSuite): void {
  const longest = Math.max(...suite.lengths);
  const { maxPositions } = header.config;
  if (longest > maxPositions) {
    throw new UserError(
      `--lengths: ${longest} tokens is longer than the model allows (${maxPositions}, ${header.configSource})`,
    );
  }
  if (suite.chat && header.chat === null) {
    throw new UserError(
      `--chat: the model has no chat template (${header.configSource}: no ` +
        "tokenizer.chat_template in a GGUF, no chat_template in tokenizer_config.json)",
    );
  }
}

/** The files `--out DIR` holds. */
const REPORT_FILES = ["report.html", "results.json"];

/** The checkpoint of answers beside them (`--resume` reads it). */
const CHECKPOINT_FILE = "outcomes.jsonl";

/** The leaderboard's generated policies, with the full cache first (ratio 0). */
function boardPolicies(values: Record<string, unknown>): LeaderboardPolicy[] {
  const methods = typeof values.methods === "string"
    ? values.methods.split(",").map((m) => m.trim())
    : [...LEADERBOARD_ALL_METHODS];
  const ratios = typeof values.ratios === "string"
    ? values.ratios.split(",").map((r) => {
      const x = Number(r.trim());
      if (!(r.trim() !== "" && x > 0 && x < 1)) {
        throw new UserError(`--ratios: '${r}' is not a fraction of the cache to remove in (0, 1)`);
      }
      return x;
    })
    : [...LEADERBOARD_RATIOS];
  try {
    const full = {
      method: "full",
      ratio: 0,
      setting: null,
      name: "full @0",
      text: 'policy "full @0";\nelse -> full;\n',
    };
    return [full, ...leaderboardPolicies(methods, ratios)];
  } catch (e) {
    throw new UserError(`--methods: ${(e as Error).message}`);
  }
}

/** A generated leaderboard policy, compiled as an eval policy. */
function compileBoardPolicy(p: LeaderboardPolicy): EvalPolicy {
  return {
    name: p.name,
    source: p.text,
    plan: compileOrThrow(p.text, `<leaderboard ${p.name}>`),
    file: "<leaderboard>",
  };
}

/** Runs `eval` with `args` (the words after `eval`); returns the exit code. */
export async function evalCommand(args: string[], deps: EvalCommandDeps): Promise<number> {
  const { values } = parseFlags("eval", args, {
    task: { type: "string", multiple: true },
    policy: { type: "string", multiple: true },
    model: { type: "string" },
    lengths: { type: "string" },
    depths: { type: "string" },
    samples: { type: "string" },
    seed: { type: "string" },
    suite: { type: "string" },
    out: { type: "string" },
    json: { type: "boolean" },
    chat: { type: "boolean" },
    protocol: { type: "string" },
    leaderboard: { type: "boolean" },
    methods: { type: "string" },
    ratios: { type: "string" },
    resume: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  const print = deps.print ?? ((text: string) => console.log(text));
  if (values.help) {
    print(EVAL_USAGE);
    return 0;
  }
  const model = await locateModelFlag(
    resolve(typeof values.model === "string" ? values.model : defaultModelFor(values)),
  );
  const suite = readSuite(values, model.path);
  checkSuiteFitsModel(await readModelHeader(model), suite);
  const board = values.leaderboard === true ? boardPolicies(values) : undefined;
  if (!board && (values.methods !== undefined || values.ratios !== undefined)) {
    throw new UserError("--methods and --ratios go with --leaderboard");
  }
  const given = (values.policy as string[] | undefined) ?? [];
  const protocol = (values.protocol as string | undefined) ?? (board ? "both" : "aware");
  const policies = withProtocols(
    [
      ...(board?.map(compileBoardPolicy) ?? []),
      ...(board && !given.length ? [] : readPolicies(given)),
    ],
    protocol,
  );
  checkGridSize(suite, policies.length);
  const out = typeof values.out === "string" ? values.out : undefined;
  if (values.resume === true && out === undefined) throw new UserError("--resume needs --out DIR");
  if (out !== undefined) {
    const replaced = values.resume === true ? REPORT_FILES : [...REPORT_FILES, CHECKPOINT_FILE];
    prepareOutputDir("eval", out, replaced, "out");
  }
  const checkpoint = out === undefined ? undefined : openCheckpoint(
    join(out, CHECKPOINT_FILE),
    checkpointHeader(model.path, suite),
    values.resume === true,
  );
  const engine = await deps.openEngine(model.path);
  const sink = deps.progress ?? stderrSink();
  let progress: ProgressLine | undefined;
  const started = performance.now();
  let report;
  try {
    report = await runEval({
      engine,
      policies,
      suite,
      done: checkpoint?.done,
      onOutcome: checkpoint?.append,
      onProgress: (p) => {
        progress ??= new ProgressLine(p.total, sink, () => performance.now(), started);
        progress.update(p.done, `${p.policy} ${p.task}`, p.resumed);
      },
    });
  } finally {
    engine.close?.();
  }
  progress?.finish();
  if (board) {
    report.leaderboard = leaderboardPoints(
      report.results,
      board,
      (p, proto) => protocol === "both" ? `${p.name} [${proto}]` : p.name,
    );
  }
  const json = reportToJson(report);
  print(values.json ? JSON.stringify(json, null, 2) : renderSummaryTable(report));
  if (out !== undefined) {
    writeOutput("eval", join(out, "report.html"), renderHtmlReport(report));
    writeOutput("eval", join(out, "results.json"), JSON.stringify(json, null, 2) + "\n");
    sink.write(`wrote ${join(out, "report.html")} and ${join(out, "results.json")}\n`);
  }
  return 0;
}
