/**
 * An evaluation suite: which tasks run, on which grid, with which templates, how many samples
 * and from which seed. Built-in defaults exist per model kind; a YAML file (docs/EVAL.md) can
 * override any part of them.
 *
 * @module
 */

import { dirname, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { isGgufPath } from "../model/ggufModel.ts";
import { UserError } from "../userError.ts";
import { MAX_LENGTH, MAX_SAMPLES, parseDepths, parseLengths } from "./gridSpec.ts";
import {
  PLANTED_NEEDLE_TEMPLATES,
  PRETRAINED_TEMPLATES,
  type PromptTemplates,
  TEMPLATE_PLACEHOLDERS,
  TEMPLATE_YAML_KEYS,
  TINY_NEEDLE_TEMPLATES,
} from "./templates.ts";

/** Every task the harness knows. */
export const TASK_NAMES = [
  "needle",
  "single_key",
  "multi_key",
  "multi_value",
  "variable_tracking",
  "ppl",
  "hitrate",
] as const;

/** One evaluation task. */
export type TaskName = typeof TASK_NAMES[number];

/** What `--task ruler` stands for. */
export const RULER_TASKS: readonly TaskName[] = [
  "single_key",
  "multi_key",
  "multi_value",
  "variable_tracking",
];

/**
 * The kinds of model with built-in suites: the two shipped toy models, and real pretrained
 * (instruct) models such as a GGUF checkpoint, which get RULER's natural-language templates.
 */
export type ModelKind = "tiny-needle" | "planted-needle" | "pretrained";

/** Every {@link ModelKind}, as a suite file's `base:` may name them. */
export const MODEL_KINDS: readonly ModelKind[] = ["tiny-needle", "planted-needle", "pretrained"];

/** A complete suite (every field present). */
export interface EvalSuite {
  /** Name shown in reports. */
  name: string;
  /** Base seed; every sample's prompt derives from it, its task, cell and index. */
  seed: number;
  /** Samples per cell. */
  samples: number;
  /** Context lengths in tokens (prompt and answer together fit in each). */
  lengths: number[];
  /** Needle depths in percent (the needle task's grid). */
  depths: number[];
  /** Tasks to run, in report order. */
  tasks: TaskName[];
  /** Prompt templates. */
  templates: PromptTemplates;
  /**
   * Wrap generation prompts in the model's chat template: the preamble, haystack and question
   * are the user's message, the answer prefix follows the assistant turn's opening (see
   * `chatPrompt.ts`). Perplexity texts are never wrapped.
   */
  chat: boolean;
  /** Multi-key: needles per prompt (one asked, the rest distractors) and the share of distractors whose key shares one word with the asked key. */
  multiKey: { needles: number; shareWord: number };
  /** Multi-value: values stored under the asked key. */
  multiValue: { values: number };
  /** Variable tracking: variables per chain, and chains (one asked, the rest distractors). */
  variableTracking: { hops: number; chains: number };
  /**
   * Perplexity: first scored position (1 = every token after BOS), and the text scored: a file
   * (its path, resolved against the suite file's folder), or the held-out filler when absent.
   */
  perplexity: { from: number; text?: string };
  /** Hit rate: attention weight above which a position counts as important while decoding. */
  hitRate: { threshold: number; maxNewTokens: number };
}

/** Parses `--task` values: repeatable, comma lists, `ruler` expands to its four tasks. */
export function parseTaskList(values: string[]): TaskName[] {
  const tasks: TaskName[] = [];
  for (const item of values.flatMap((v) => v.split(",")).map((v) => v.trim()).filter(Boolean)) {
    const expanded: readonly string[] = item === "ruler" ? RULER_TASKS : [item.replace(/-/g, "_")];
    for (const name of expanded) {
      if (!(TASK_NAMES as readonly string[]).includes(name)) {
        throw new UserError(
          `unknown task '${item}'; tasks: needle, ruler (${RULER_TASKS.join(", ")}), ppl, hitrate`,
        );
      }
      if (!tasks.includes(name as TaskName)) tasks.push(name as TaskName);
    }
  }
  if (tasks.length === 0) throw new UserError("--task needs at least one task");
  return tasks;
}

/**
 * The kind of a model by its path: a `.gguf` file is pretrained; a folder named
 * `.../planted-needle` is planted-needle; any other folder tiny-needle (a suite file's
 * `base: pretrained` selects the pretrained templates for a real Hugging Face folder).
 */
export function modelKindOf(modelPath: string): ModelKind {
  const name = modelPath.replace(/[\\/]+$/, "").split(/[\\/]/).at(-1) ?? "";
  if (isGgufPath(name)) return "pretrained";
  return name.includes("planted-needle") ? "planted-needle" : "tiny-needle";
}

const BUILT_IN_TEMPLATES: Record<ModelKind, PromptTemplates> = {
  "tiny-needle": TINY_NEEDLE_TEMPLATES,
  "planted-needle": PLANTED_NEEDLE_TEMPLATES,
  pretrained: PRETRAINED_TEMPLATES,
};

/** The built-in suite of a model kind. */
export function defaultSuite(kind: ModelKind): EvalSuite {
  const planted = kind === "planted-needle";
  return {
    name: `${kind} default`,
    seed: 1234,
    samples: 3,
    lengths: planted ? [512, 1024, 2048, 4096] : [1024, 2048, 4096],
    depths: parseDepths("0:100:10"),
    tasks: ["needle"],
    templates: { ...BUILT_IN_TEMPLATES[kind] },
    chat: false,
    multiKey: { needles: 4, shareWord: 0.4 },
    multiValue: { values: 3 },
    variableTracking: { hops: 4, chains: 2 },
    perplexity: { from: 1 },
    hitRate: { threshold: 0.05, maxNewTokens: 8 },
  };
}

type Fields = Record<string, unknown>;

function asObject(value: unknown, where: string): Fields {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new UserError(`${where} must be a mapping`);
  }
  return value as Fields;
}

function checkKeys(fields: Fields, allowed: readonly string[], where: string): void {
  for (const key of Object.keys(fields)) {
    if (!allowed.includes(key)) {
      throw new UserError(`${where}: unknown key '${key}' (allowed: ${allowed.join(", ")})`);
    }
  }
}

function numberField(
  fields: Fields,
  key: string,
  fallback: number,
  where: string,
  opts: { integer?: boolean; min: number; max?: number },
): number {
  const value = fields[key];
  if (value === undefined) return fallback;
  const ok = typeof value === "number" && Number.isFinite(value) &&
    (!opts.integer || Number.isInteger(value)) && value >= opts.min &&
    (opts.max === undefined || value <= opts.max);
  if (!ok) {
    const range = opts.max === undefined ? `≥ ${opts.min}` : `in ${opts.min}..${opts.max}`;
    const kind = opts.integer ? "an integer" : "a number";
    throw new UserError(
      `${where}: '${key}' must be ${kind} ${range}, not ${JSON.stringify(value)}`,
    );
  }
  return value as number;
}

function listOrString(value: unknown, key: string, where: string): string | (string | number)[] {
  if (typeof value === "string" || typeof value === "number") return String(value);
  if (Array.isArray(value) && value.every((v) => typeof v === "string" || typeof v === "number")) {
    return value;
  }
  throw new UserError(`${where}: '${key}' must be a list or a string`);
}

function parseTemplates(value: unknown, base: PromptTemplates, where: string): PromptTemplates {
  const fields = asObject(value, `${where}: templates`);
  checkKeys(fields, Object.keys(TEMPLATE_YAML_KEYS), `${where}: templates`);
  const templates = { ...base };
  for (const [yamlKey, text] of Object.entries(fields)) {
    const key = TEMPLATE_YAML_KEYS[yamlKey];
    if (typeof text !== "string") {
      throw new UserError(`${where}: templates.${yamlKey} must be text`);
    }
    for (const [, name] of text.matchAll(/\{([a-z_]+)\}/g)) {
      if (!TEMPLATE_PLACEHOLDERS[key].includes(name)) {
        throw new UserError(
          `${where}: templates.${yamlKey} uses {${name}}; it may use ${
            TEMPLATE_PLACEHOLDERS[key].map((p) => `{${p}}`).join(", ")
          }`,
        );
      }
    }
    templates[key] = text;
  }
  return templates;
}

/** The keys a suite YAML file may hold. */
export const SUITE_KEYS: readonly string[] = [
  "name",
  "base",
  "seed",
  "samples",
  "lengths",
  "depths",
  "tasks",
  "templates",
  "chat",
  "multi_key",
  "multi_value",
  "variable_tracking",
  "ppl",
  "hitrate",
];

/** Runs a field's parser; its UserError gains the file and field it came from. */
function inField<T>(file: string, key: string, parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    if (!(e instanceof UserError) || e.message.startsWith(file)) throw e;
    throw new UserError(`${file}: '${key}': ${e.message}`);
  }
}

/**
 * Parses a suite YAML file over `base` (the model kind's default, or the one its `base:` key
 * names). Throws a user error naming the file and the key for anything malformed.
 */
export function parseSuiteYaml(text: string, file: string, base: EvalSuite): EvalSuite {
  let document: unknown;
  try {
    document = parseYaml(text, { logLevel: "error" }); // no YAMLWarning lines on stderr
  } catch (e) {
    throw new UserError(`${file}: not valid YAML (${(e as Error).message.split("\n")[0]})`);
  }
  const fields = asObject(document ?? {}, file);
  checkKeys(fields, SUITE_KEYS, file);
  let suite = base;
  if (fields.base !== undefined) {
    if (!(MODEL_KINDS as readonly unknown[]).includes(fields.base)) {
      throw new UserError(`${file}: 'base' must be ${MODEL_KINDS.join(", ")}`);
    }
    suite = defaultSuite(fields.base as ModelKind);
  }
  suite = structuredClone(suite);
  if (fields.name !== undefined) suite.name = String(fields.name);
  suite.seed = numberField(fields, "seed", suite.seed, file, {
    integer: true,
    min: 0,
    max: Number.MAX_SAFE_INTEGER,
  });
  suite.samples = numberField(fields, "samples", suite.samples, file, {
    integer: true,
    min: 1,
    max: MAX_SAMPLES,
  });
  if (fields.lengths !== undefined) {
    suite.lengths = inField(
      file,
      "lengths",
      () => parseLengths(listOrString(fields.lengths, "lengths", file)),
    );
  }
  if (fields.depths !== undefined) {
    suite.depths = inField(
      file,
      "depths",
      () => parseDepths(listOrString(fields.depths, "depths", file)),
    );
  }
  if (fields.tasks !== undefined) {
    const tasks = listOrString(fields.tasks, "tasks", file);
    suite.tasks = inField(
      file,
      "tasks",
      () => parseTaskList(Array.isArray(tasks) ? tasks.map(String) : [tasks]),
    );
  }
  if (fields.templates !== undefined) {
    suite.templates = parseTemplates(fields.templates, suite.templates, file);
  }
  if (fields.chat !== undefined) {
    if (typeof fields.chat !== "boolean") {
      throw new UserError(`${file}: 'chat' must be true or false`);
    }
    suite.chat = fields.chat;
  }
  if (fields.multi_key !== undefined) {
    const mk = asObject(fields.multi_key, `${file}: multi_key`);
    checkKeys(mk, ["needles", "share_word"], `${file}: multi_key`);
    suite.multiKey = {
      needles: numberField(mk, "needles", suite.multiKey.needles, file, {
        integer: true,
        min: 1,
        max: 1000,
      }),
      shareWord: numberField(mk, "share_word", suite.multiKey.shareWord, file, { min: 0, max: 1 }),
    };
  }
  if (fields.multi_value !== undefined) {
    const mv = asObject(fields.multi_value, `${file}: multi_value`);
    checkKeys(mv, ["values"], `${file}: multi_value`);
    suite.multiValue = {
      values: numberField(mv, "values", suite.multiValue.values, file, {
        integer: true,
        min: 1,
        max: 1000,
      }),
    };
  }
  if (fields.variable_tracking !== undefined) {
    const vt = asObject(fields.variable_tracking, `${file}: variable_tracking`);
    checkKeys(vt, ["hops", "chains"], `${file}: variable_tracking`);
    const old = suite.variableTracking;
    suite.variableTracking = {
      hops: numberField(vt, "hops", old.hops, file, { integer: true, min: 1, max: 1000 }),
      chains: numberField(vt, "chains", old.chains, file, { integer: true, min: 1, max: 1000 }),
    };
  }
  if (fields.ppl !== undefined) {
    const ppl = asObject(fields.ppl, `${file}: ppl`);
    checkKeys(ppl, ["from", "text"], `${file}: ppl`);
    if (ppl.text !== undefined && (typeof ppl.text !== "string" || ppl.text === "")) {
      throw new UserError(`${file}: ppl.text must be the path of a text file`);
    }
    suite.perplexity = {
      from: numberField(ppl, "from", suite.perplexity.from, file, {
        integer: true,
        min: 1,
        max: MAX_LENGTH,
      }),
      ...(typeof ppl.text === "string"
        ? { text: resolve(dirname(file), ppl.text) }
        : suite.perplexity.text !== undefined
        ? { text: suite.perplexity.text }
        : {}),
    };
  }
  if (fields.hitrate !== undefined) {
    const hr = asObject(fields.hitrate, `${file}: hitrate`);
    checkKeys(hr, ["threshold", "max_new_tokens"], `${file}: hitrate`);
    suite.hitRate = {
      threshold: numberField(hr, "threshold", suite.hitRate.threshold, file, { min: 0, max: 1 }),
      maxNewTokens: numberField(hr, "max_new_tokens", suite.hitRate.maxNewTokens, file, {
        integer: true,
        min: 1,
        max: 65536,
      }),
    };
  }
  return suite;
}
