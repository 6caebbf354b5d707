/**
 * A {@link TextTokenizer} built from the `tokenizer.ggml.*` metadata of a GGUF file (keys from
 * ggml's `docs/gguf.md`), interpreted the way llama.cpp's `src/llama-vocab.cpp` does, expressed
 * as an in-memory `tokenizer.json` for `@huggingface/tokenizers`:
 *
 * - `gpt2` (byte-level BPE): the vocabulary and ranked merges; the pre-tokenizer is llama.cpp's
 *   regex list for `tokenizer.ggml.pre`, each regex a `Split` that keeps both the matches and the
 *   text between them, then the byte-to-unicode mapping. An unknown `pre` is refused.
 * - `llama` (SentencePiece): llama.cpp repeatedly merges the adjacent pair whose concatenation is
 *   the vocabulary entry of highest score, then spells leftover characters as `<0xXX>` byte
 *   tokens. Here that is a byte-fallback BPE whose merges are every split of every entry into two
 *   reachable parts (entries or single characters), ranked by the entry's score. One difference:
 *   when two *different* entries with equal scores compete, llama.cpp takes the leftmost pair and
 *   this takes the lower id (sentencepiece models give mergeable pieces distinct scores).
 * - token types (`llama_token_type`): control and unknown tokens become special added tokens,
 *   user-defined ones plain added tokens, so their text encodes to their id.
 *
 * @module
 */

import { Tokenizer } from "@huggingface/tokenizers";
import { ModelError } from "./errors.ts";
import type { GgufMetadata, GgufValue } from "./ggufTypes.ts";
import { TextTokenizer } from "./tokenizer.ts";

/** Values of `tokenizer.ggml.token_type` (llama.cpp's `enum llama_token_type`). */
export const GGUF_TOKEN_TYPE = {
  UNDEFINED: 0,
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;

/** Special-token facts of a GGUF vocabulary (see {@link ggufSpecialTokens}). */
export interface GgufSpecialTokens {
  /** `tokenizer.ggml.bos_token_id` (llama.cpp's default for `llama` vocabularies: 1). */
  bosId: number | undefined;
  /** Ids that end generation: EOS, EOT, EOM, then the end-of-turn tokens found by text. */
  eosIds: number[];
  /** The chat end-of-turn token: `eot_token_id`, else the first of llama.cpp's EOT texts. */
  eotId: number | undefined;
  /** Whether encoding prepends BOS (`tokenizer.ggml.add_bos_token`, else llama.cpp's default). */
  addBos: boolean;
  /** Whether encoding appends EOS (`tokenizer.ggml.add_eos_token`, default false). */
  addEos: boolean;
  /** `tokenizer.chat_template` (a Jinja template), when present. */
  chatTemplate: string | undefined;
}

/** A vocabulary and merges beyond this many entries is refused as corrupt. */
const MAX_ENTRIES = 1 << 22;

// llama.cpp's pre-tokenizer regexes (llm_tokenizer_bpe), applied in sequence.
const GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const LLAMA3_HEAD = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|" +
  "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|";
const LLAMA3_TAIL = "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const LLAMA3 = `${LLAMA3_HEAD}\\p{N}{1,3}${LLAMA3_TAIL}`;
const QWEN2 = `${LLAMA3_HEAD}\\p{N}${LLAMA3_TAIL}`;

interface PreTokenizerSpec {
  regexes: readonly string[];
  /** A pre-token that is itself in the vocabulary is kept whole (llama.cpp's ignore_merges). */
  ignoreMerges?: boolean;
  /** llama.cpp's add_bos default for this pre-tokenizer. */
  addBos?: boolean;
}

const DEFAULT: PreTokenizerSpec = {
  regexes: ["[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2, "\\p{N}+", "[0-9][0-9][0-9]"],
};
const GPT2_SPEC: PreTokenizerSpec = { regexes: [GPT2] };
const DIGITS_SPEC: PreTokenizerSpec = { regexes: ["\\p{N}", GPT2] };
const LLAMA3_SPEC: PreTokenizerSpec = { regexes: [LLAMA3], ignoreMerges: true, addBos: true };
const QWEN2_SPEC: PreTokenizerSpec = { regexes: [QWEN2] };

/** `tokenizer.ggml.pre` values understood here, grouped as llama.cpp groups them. */
const PRE_TOKENIZERS: ReadonlyMap<string, PreTokenizerSpec> = new Map([
  ["default", DEFAULT],
  ...["gpt-2", "phi-2", "mpt", "olmo"].map((n) => [n, GPT2_SPEC] as const),
  ...["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"]
    .map((n) => [n, DIGITS_SPEC] as const),
  ...["llama3", "llama-v3", "llama-bpe", "falcon3"].map((n) => [n, LLAMA3_SPEC] as const),
  ...["dbrx", "smaug-bpe"].map((n) => [n, { regexes: [LLAMA3] }] as const),
  ...["qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"].map((n) => [n, QWEN2_SPEC] as const),
  ["falcon", { regexes: ["[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2, "[0-9][0-9][0-9]"] }],
]);

/** The `tokenizer.ggml.pre` names accepted by {@link tokenizerFromGguf}. */
export const GGUF_PRE_TOKENIZERS: readonly string[] = [...PRE_TOKENIZERS.keys()];

/** llama.cpp's end-of-turn texts (special_eot_id detection), most specific first. */
const EOT_TEXTS = ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>"]
  .concat(["<|end_of_text|>", "<EOT>", "_<EOT>", "<end_of_utterance>"]);
/** Texts llama.cpp treats as end of generation (special_eog_ids). */
const EOG_TEXTS = [...EOT_TEXTS, "<|eom_id|>"];

/** Reads and checks metadata values; every failure names the file and the key. */
class Fields {
  constructor(readonly meta: GgufMetadata, readonly file: string) {}

  fail(key: string, problem: string): never {
    throw new ModelError(`${this.file}: ${key} ${problem}`);
  }

  string(key: string): string | undefined {
    const v = this.meta.get(key);
    if (v === undefined || typeof v === "string") return v;
    this.fail(key, `must be a string, not ${describe(v)}`);
  }

  bool(key: string): boolean | undefined {
    const v = this.meta.get(key);
    if (v === undefined || typeof v === "boolean") return v;
    this.fail(key, `must be a boolean, not ${describe(v)}`);
  }

  array(key: string, what: string, length?: number): GgufValue[] | undefined {
    const v = this.meta.get(key);
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) this.fail(key, `must be an array of ${what}, not ${describe(v)}`);
    if (v.length > MAX_ENTRIES) this.fail(key, `has ${v.length} entries (at most ${MAX_ENTRIES})`);
    if (length !== undefined && v.length !== length) {
      this.fail(key, `has ${v.length} entries but tokenizer.ggml.tokens has ${length}`);
    }
    return v;
  }

  strings(key: string): string[] | undefined {
    const v = this.array(key, "strings");
    v?.forEach((s, i) => {
      if (typeof s !== "string") this.fail(key, `must hold strings; entry ${i} is ${describe(s)}`);
    });
    return v as string[] | undefined;
  }

  numbers(key: string, length: number, integers: boolean): number[] | undefined {
    const v = this.array(key, "numbers", length);
    v?.forEach((x, i) => {
      if (typeof x !== "number" || Number.isNaN(x) || (integers && !Number.isInteger(x))) {
        this.fail(key, `must hold ${integers ? "integers" : "numbers"}; entry ${i} is ${show(x)}`);
      }
    });
    return v as number[] | undefined;
  }

  id(key: string, vocabSize: number): number | undefined {
    const v = this.meta.get(key);
    if (v === undefined) return undefined;
    if (typeof v !== "number" && typeof v !== "bigint") {
      this.fail(key, `must be a token id, not ${describe(v)}`);
    }
    if (!(v >= 0 && v < vocabSize) || (typeof v === "number" && !Number.isInteger(v))) {
      this.fail(key, `is ${v}, not a token id (the vocabulary has ${vocabSize} tokens)`);
    }
    return Number(v);
  }
}

function describe(v: GgufValue): string {
  if (Array.isArray(v)) return "an array";
  return typeof v === "bigint" ? "a 64-bit integer" : `a ${typeof v}`;
}

function show(v: GgufValue): string {
  return typeof v === "number" ? `${v}` : describe(v);
}

/** Everything read from the metadata, checked. */
interface GgufVocab {
  fields: Fields;
  model: "gpt2" | "llama";
  pre: PreTokenizerSpec | undefined;
  tokens: string[];
  types: number[];
  /** Text to id; a repeated text maps to its last id, as in llama.cpp. */
  ids: Map<string, number>;
  special: GgufSpecialTokens;
}

function readVocab(meta: GgufMetadata, file: string): GgufVocab {
  const f: Fields = new Fields(meta, file);
  const modelKey = "tokenizer.ggml.model";
  const model = f.string(modelKey) ?? f.fail(modelKey, "is missing (no tokenizer in this file)");
  if (model !== "gpt2" && model !== "llama") {
    f.fail(modelKey, `is '${model}'; supported: 'gpt2' (byte-level BPE), 'llama' (SentencePiece)`);
  }
  let pre: PreTokenizerSpec | undefined;
  if (model === "gpt2") {
    // llama.cpp uses 'default' when the key is missing; an unknown name is refused here.
    const name = f.string("tokenizer.ggml.pre") ?? "default";
    pre = PRE_TOKENIZERS.get(name) ?? f.fail(
      "tokenizer.ggml.pre",
      `is '${name}', a pre-tokenizer this loader does not know; supported: ` +
        GGUF_PRE_TOKENIZERS.join(", "),
    );
  }
  const tokensKey = "tokenizer.ggml.tokens";
  const raw = f.strings(tokensKey) ?? f.fail(tokensKey, "is missing");
  if (raw.length === 0) f.fail(tokensKey, "is empty");
  const tokens = raw.map((t, i) => t === "" ? `[EMPTY_${i}]` : t); // llama.cpp's renaming
  const n = tokens.length;
  const types = f.numbers("tokenizer.ggml.token_type", n, true) ??
    new Array<number>(n).fill(GGUF_TOKEN_TYPE.NORMAL);
  const ids = new Map(tokens.map((t, i) => [t, i]));

  const llama = model === "llama";
  const bosId = f.id("tokenizer.ggml.bos_token_id", n) ?? (llama && n > 1 ? 1 : undefined);
  const eosId = f.id("tokenizer.ggml.eos_token_id", n) ?? (llama && n > 2 ? 2 : undefined);
  const eotKey = f.id("tokenizer.ggml.eot_token_id", n);
  const eomId = f.id("tokenizer.ggml.eom_token_id", n) ?? ids.get("<|eom_id|>");
  const eotId = eotKey ?? EOT_TEXTS.map((t) => ids.get(t)).find((id) => id !== undefined);
  const byText = EOG_TEXTS.map((t) => ids.get(t)).filter((id) => id !== undefined);
  const eosIds = [...new Set([eosId, eotId, eomId, ...byText])].filter((id) => id !== undefined);
  const special: GgufSpecialTokens = {
    bosId,
    eosIds,
    eotId,
    addBos: f.bool("tokenizer.ggml.add_bos_token") ?? (llama || (pre?.addBos ?? false)),
    addEos: f.bool("tokenizer.ggml.add_eos_token") ?? false,
    chatTemplate: f.string("tokenizer.chat_template"),
  };
  if (special.addBos && bosId === undefined) {
    f.fail("tokenizer.ggml.add_bos_token", "is true but there is no tokenizer.ggml.bos_token_id");
  }
  if (special.addEos && eosId === undefined) {
    f.fail("tokenizer.ggml.add_eos_token", "is true but there is no tokenizer.ggml.eos_token_id");
  }
  return { fields: f, model, pre, tokens, types, ids, special };
}

/**
 * The special-token facts the runtime needs from a GGUF's metadata, as llama.cpp derives them
 * (`llama_vocab::impl::load`): BOS, the end-of-generation ids (EOS, `eot_token_id`,
 * `eom_token_id`, and tokens such as `<|im_end|>` / `<|eot_id|>` found by text), whether to add
 * BOS / EOS, and `tokenizer.chat_template`. Throws {@link ModelError} for malformed fields.
 */
export function ggufSpecialTokens(meta: GgufMetadata, file: string): GgufSpecialTokens {
  return readVocab(meta, file).special;
}

/**
 * Builds the tokenizer described by a GGUF's `tokenizer.ggml.*` metadata (ggml `docs/gguf.md`),
 * following llama.cpp's interpretation (`src/llama-vocab.cpp`); BOS / EOS are added by the
 * tokenizer's post-processor when the metadata says so. `file` names the source in errors: every
 * malformed or unsupported field gives a {@link ModelError} naming the file and the key.
 */
export function tokenizerFromGguf(meta: GgufMetadata, file: string): TextTokenizer {
  const vocab = readVocab(meta, file);
  const json = vocab.model === "gpt2" ? byteLevelJson(vocab) : sentencePieceJson(vocab);
  try {
    return new TextTokenizer(new Tokenizer(json, { clean_up_tokenization_spaces: false }));
  } catch (error) {
    throw new ModelError(
      `${file}: the tokenizer.ggml.* metadata does not make a usable tokenizer ` +
        `(${(error as Error).message})`,
    );
  }
}

/** The `tokenizer.json` fields common to both models. */
function commonJson(v: GgufVocab): Record<string, unknown> {
  const { bosId, eosIds, addBos, addEos } = v.special;
  const specialIds = new Set<number | undefined>([bosId, ...eosIds]);
  const added_tokens = [];
  for (let id = 0; id < v.tokens.length; id++) {
    const type = v.types[id];
    const special = type === GGUF_TOKEN_TYPE.CONTROL || type === GGUF_TOKEN_TYPE.UNKNOWN ||
      specialIds.has(id);
    if (!special && type !== GGUF_TOKEN_TYPE.USER_DEFINED) continue;
    const flags = { single_word: false, lstrip: false, rstrip: false, normalized: false };
    added_tokens.push({ id, content: v.tokens[id], ...flags, special });
  }
  const bos = addBos ? v.tokens[bosId!] : undefined;
  const eos = addEos ? v.tokens[eosIds[0]] : undefined;
  return { version: "1.0", added_tokens, post_processor: postProcessor(v, bos, eos) };
}

/** A TemplateProcessing that wraps the text in BOS / EOS, or null when neither is added. */
function postProcessor(v: GgufVocab, bos?: string, eos?: string): object | null {
  if (bos === undefined && eos === undefined) return null;
  const added = [bos, eos].filter((t) => t !== undefined);
  const token = (t?: string) => t === undefined ? [] : [{ SpecialToken: { id: t, type_id: 0 } }];
  const sequence = (id: string, type_id: number) => ({ Sequence: { id, type_id } });
  return {
    type: "TemplateProcessing",
    single: [...token(bos), sequence("A", 0), ...token(eos)],
    pair: [...token(bos), sequence("A", 0), sequence("B", 1), ...token(eos)],
    special_tokens: Object.fromEntries(
      added.map((t) => [t, { id: t, ids: [v.ids.get(t)], tokens: [t] }]),
    ),
  };
}

/** Text-to-id object without a prototype, so entries such as `__proto__` stay plain keys. */
function vocabObject(ids: Map<string, number>): Record<string, number> {
  const vocab: Record<string, number> = Object.create(null);
  for (const [text, id] of ids) vocab[text] = id;
  return vocab;
}

function unkToken(v: GgufVocab, fallback?: number): string | null {
  const id = v.fields.id("tokenizer.ggml.unknown_token_id", v.tokens.length) ?? fallback;
  return id === undefined ? null : v.tokens[id];
}

/** `gpt2`: byte-level BPE with llama.cpp's pre-tokenizer regexes. */
function byteLevelJson(v: GgufVocab): object {
  const key = "tokenizer.ggml.merges";
  const merges = (v.fields.strings(key) ?? v.fields.fail(key, "is missing")).map((m, i) => {
    const space = m.indexOf(" ");
    if (space < 1 || space === m.length - 1 || m.indexOf(" ", space + 1) !== -1) {
      v.fields.fail(key, `entry ${i} is ${JSON.stringify(m)}, not two tokens joined by one space`);
    }
    return [m.slice(0, space), m.slice(space + 1)];
  });
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: false };
  return {
    ...commonJson(v),
    normalizer: null,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        ...v.pre!.regexes.map((regex) => ({
          type: "Split",
          pattern: { Regex: regex },
          behavior: "Isolated",
          invert: false,
        })),
        { ...byteLevel, use_regex: false },
      ],
    },
    decoder: { ...byteLevel, use_regex: false },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: unkToken(v),
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: v.pre!.ignoreMerges ?? false,
      vocab: vocabObject(v.ids),
      merges,
    },
  };
}

/** `llama`: SentencePiece as score-ranked merges with byte fallback, `▁` for space. */
function sentencePieceJson(v: GgufVocab): object {
  const scores = v.fields.numbers("tokenizer.ggml.scores", v.tokens.length, false) ??
    v.fields.fail("tokenizer.ggml.scores", "is missing (a 'llama' vocabulary needs scores)");
  const prefix = v.fields.bool("tokenizer.ggml.add_space_prefix") ?? true;
  const toMeta = { type: "Replace", pattern: { String: " " }, content: "▁" };
  return {
    ...commonJson(v),
    normalizer: prefix
      ? { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "▁" }, toMeta] }
      : toMeta,
    pre_tokenizer: null,
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: "▁" }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        ...(prefix ? [{ type: "Strip", content: " ", start: 1, stop: 0 }] : []),
      ],
    },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: unkToken(v, 0), // llama.cpp's default unknown id for 'llama'
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: true,
      ignore_merges: false,
      vocab: vocabObject(v.ids),
      merges: scoreMerges(v.ids, scores),
    },
  };
}

/**
 * Every way to build a vocabulary entry from two adjacent symbols that llama.cpp's SPM loop can
 * hold (entries, or single characters not yet merged), best score first; ties by entry id.
 */
function scoreMerges(ids: Map<string, number>, scores: number[]): [string, string][] {
  const found: { left: string; right: string; score: number; id: number }[] = [];
  const reachable = (s: string) => ids.has(s) || (s.length <= 2 && Array.from(s).length === 1);
  for (const [text, id] of ids) {
    const chars = Array.from(text);
    for (let k = 1; k < chars.length; k++) {
      const left = chars.slice(0, k).join("");
      const right = chars.slice(k).join("");
      if (reachable(left) && reachable(right)) found.push({ left, right, score: scores[id], id });
    }
  }
  found.sort((a, b) => a.score > b.score ? -1 : a.score < b.score ? 1 : a.id - b.id);
  return found.map((m) => [m.left, m.right]);
}
