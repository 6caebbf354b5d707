/**
 * Prompt templates of the evaluation tasks. A prompt is
 * `preamble + haystack + question + answer prefix`; `{name}` placeholders are filled per sample.
 * The built-in sets are the templates the shipped models were trained or built on
 * (models/tiny-needle/README.md, planted-needle/README.md) and RULER's wording for real
 * pretrained models; a suite file can replace any of them.
 *
 * @module
 */

/** The texts a suite can configure. Every field may use the placeholders listed beside it. */
export interface PromptTemplates {
  /** Text before the haystack of the needle tasks (an instruction; empty for none). */
  preamble: string;
  /** Needle sentence: `{key}`, `{value}`. */
  needle: string;
  /** Question of the single-value tasks (needle, single-key, multi-key): `{key}`. */
  question: string;
  /** Text after every question that the model continues: `{key}` (empty for variables). */
  answerPrefix: string;
  /** Question of the multi-value task: `{key}`. */
  multiValueQuestion: string;
  /** Variable tracking: the first assignment of a chain, `{name}`, `{value}`. */
  variableValue: string;
  /** Variable tracking: a copy in a chain, `{name}`, `{source}`. */
  variableCopy: string;
  /** Variable tracking question: `{value}`. */
  variableQuestion: string;
  /** Answer prefix of variable tracking (its question names no key): `{value}`. */
  variableAnswerPrefix: string;
  /** Text before the haystack of variable tracking (empty for none). */
  variablePreamble: string;
}

/** Template names as written in suite YAML files (snake_case) → field names. */
export const TEMPLATE_YAML_KEYS: Record<string, keyof PromptTemplates> = {
  preamble: "preamble",
  needle: "needle",
  question: "question",
  answer_prefix: "answerPrefix",
  multi_value_question: "multiValueQuestion",
  variable_value: "variableValue",
  variable_copy: "variableCopy",
  variable_question: "variableQuestion",
  variable_answer_prefix: "variableAnswerPrefix",
  variable_preamble: "variablePreamble",
};

/** tiny-needle's training template: `...\nQuestion: What is ...? Answer: ` → `{7 digits}.` */
export const TINY_NEEDLE_TEMPLATES: PromptTemplates = {
  preamble: "",
  needle: "The special magic number for {key} is {value}.",
  question: "\nQuestion: What is the special magic number for {key}?",
  answerPrefix: " Answer: ",
  multiValueQuestion: "\nQuestion: What are all the special magic numbers for {key}?",
  variableValue: "VAR {name} = {value}.",
  variableCopy: "VAR {name} = VAR {source}.",
  variableQuestion: "\nQuestion: Which variables are assigned the value {value}?",
  variableAnswerPrefix: " Answer: ",
  variablePreamble: "",
};

/**
 * planted-needle's template: the question ends with the needle's own prefix, so the answer
 * (` {7 digits}.`) is a copy of the needle's continuation.
 */
export const PLANTED_NEEDLE_TEMPLATES: PromptTemplates = {
  ...TINY_NEEDLE_TEMPLATES,
  answerPrefix: " Answer: The special magic number for {key} is",
};

/**
 * Templates for real pretrained (instruct) models, in NVIDIA RULER's wording (`scripts/data/
 * synthetic/constants.py`): an instruction before the haystack, a question naming the provided
 * text, and an answer prefix the model completes with ` {7 digits}.`.
 */
export const PRETRAINED_TEMPLATES: PromptTemplates = {
  preamble: "Some special magic numbers are hidden within the following text. " +
    "Make sure to memorize it. I will quiz you about the numbers afterwards.\n",
  needle: "The special magic number for {key} is {value}.",
  question: "\nWhat is the special magic number for {key} mentioned in the provided text?",
  answerPrefix: " The special magic number for {key} mentioned in the provided text is",
  multiValueQuestion:
    "\nWhat are all the special magic numbers for {key} mentioned in the provided text?",
  variableValue: "VAR {name} = {value}.",
  variableCopy: "VAR {name} = VAR {source}.",
  variableQuestion:
    "\nQuestion: Find all variables that are assigned the value {value} in the text above.",
  variableAnswerPrefix: " Answer: According to the chain(s) of variable assignment in the text " +
    "above, the variables assigned the value {value} are:",
  variablePreamble:
    "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n",
};

/**
 * Fills `{name}` placeholders. Throws when the template names a placeholder that `values` does
 * not have, so a misspelt template fails before any sample runs.
 */
export function fillTemplate(template: string, values: Record<string, string>): string {
  return template.replace(/\{([a-z_]+)\}/g, (_, name: string) => {
    const value = values[name];
    if (value === undefined) {
      throw new Error(`template ${JSON.stringify(template)} uses {${name}}, which it cannot have`);
    }
    return value;
  });
}

/** Placeholders each template may use (for validating suite files). */
export const TEMPLATE_PLACEHOLDERS: Record<keyof PromptTemplates, string[]> = {
  preamble: [],
  needle: ["key", "value"],
  question: ["key"],
  answerPrefix: ["key"],
  multiValueQuestion: ["key"],
  variableValue: ["name", "value"],
  variableCopy: ["name", "source"],
  variableQuestion: ["value"],
  variableAnswerPrefix: ["value"],
  variablePreamble: [],
};
