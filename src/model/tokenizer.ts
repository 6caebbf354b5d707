/**
 * Text ⇄ token ids for a model folder, through `@huggingface/tokenizers` reading
 * `tokenizer.json` (and `tokenizer_config.json` when present), plus a streaming decoder that
 * emits text as tokens arrive without splitting a UTF-8 character that spans several tokens.
 *
 * @module
 */

import { basename, join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { ModelError } from "./errors.ts";
import { readBoundedFile, TOKENIZER_JSON_LIMIT } from "./readBounded.ts";

/** Options of {@link TextTokenizer.encode}. */
export interface EncodeOptions {
  /** Apply the tokenizer's post-processor (e.g. prepend BOS). Default true. */
  addSpecialTokens?: boolean;
}

/** Options of {@link TextTokenizer.decode} and {@link TextTokenizer.streamDecoder}. */
export interface DecodeOptions {
  /** Leave special tokens (BOS, EOS, ...) out of the text. Default false. */
  skipSpecialTokens?: boolean;
}

/** How {@link TextTokenizer.decode} shows an id outside the tokenizer's vocabulary: `⟨id 151700⟩`. */
export function unknownIdText(id: number): string {
  return `⟨id ${id}⟩`;
}

/** A loaded tokenizer. */
export class TextTokenizer {
  private readonly inner: Tokenizer;
  /** Number of ids the tokenizer knows (including added tokens). */
  readonly vocabSize: number;

  /** Wraps a `@huggingface/tokenizers` instance. */
  constructor(inner: Tokenizer) {
    this.inner = inner;
    let largest = -1;
    for (const id of inner.get_vocab(true).values()) largest = Math.max(largest, id);
    this.vocabSize = largest + 1;
  }

  /** Token ids of `text` (with special tokens, e.g. BOS, unless `addSpecialTokens` is false). */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    return this.inner.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  /**
   * Text of `ids`. An id the tokenizer does not know (a model whose `vocab_size` is padded past
   * its tokenizer, as Qwen2's is, can sample one) is shown as {@link unknownIdText} instead of
   * failing; the known runs around it decode as usual.
   */
  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    if (ids.length === 0) return "";
    const decodeRun = (run: number[]) =>
      run.length === 0 ? "" : this.inner.decode(run, {
        skip_special_tokens: opts.skipSpecialTokens ?? false,
        clean_up_tokenization_spaces: false,
      });
    let text = "";
    let run: number[] = [];
    for (const id of ids) {
      if (this.inner.id_to_token(id) !== undefined) {
        run.push(id);
        continue;
      }
      text += decodeRun(run) + unknownIdText(id);
      run = [];
    }
    return text + decodeRun(run);
  }

  /** The token string of `id` (e.g. `"Ġthe"`), or undefined for an unknown id. */
  tokenText(id: number): string | undefined {
    return this.inner.id_to_token(id);
  }

  /** Id of a token string (e.g. `"</s>"`), or undefined. */
  tokenId(token: string): number | undefined {
    return this.inner.token_to_id(token);
  }

  /** A decoder for text that arrives one token at a time (see {@link StreamDecoder}). */
  streamDecoder(opts: DecodeOptions = {}): StreamDecoder {
    return new StreamDecoder(this, opts);
  }
}

/**
 * Turns a stream of token ids into text pieces whose concatenation equals the decoding of the
 * whole stream. A piece is held back while the text so far ends in an incomplete UTF-8 character
 * (U+FFFD), as happens when byte-level BPE splits an emoji across tokens; {@link flush} releases
 * what is left. Each step decodes only the last few tokens, so the cost does not grow with the
 * length of the stream.
 */
export class StreamDecoder {
  private readonly tokenizer: TextTokenizer;
  private readonly opts: DecodeOptions;
  /** Ids not yet fully emitted, preceded by a few emitted ones for context. */
  private window: number[] = [];
  /** How many ids at the start of `window` have been emitted already (context only). */
  private emittedInWindow = 0;

  /** Creates a decoder; prefer {@link TextTokenizer.streamDecoder}. */
  constructor(tokenizer: TextTokenizer, opts: DecodeOptions = {}) {
    this.tokenizer = tokenizer;
    this.opts = opts;
  }

  /** Adds one token; returns the text it completes (often `""` while a character is pending). */
  push(id: number): string {
    this.window.push(id);
    const context = this.tokenizer.decode(this.window.slice(0, this.emittedInWindow), this.opts);
    const text = this.tokenizer.decode(this.window, this.opts);
    const pending = this.window.length - this.emittedInWindow;
    if (text.length <= context.length) return "";
    // A UTF-8 character spans at most 4 bytes, so a U+FFFD that survives 8 tokens is real.
    if (text.endsWith("\uFFFD") && pending < 8) return "";
    // Keep the last emitted token as context so that decoders that treat the first token
    // specially (e.g. dropping a leading space) decode the next one correctly.
    this.window = this.window.slice(this.window.length - 1);
    this.emittedInWindow = 1;
    return text.slice(context.length);
  }

  /** Returns whatever is still held back (possibly with U+FFFD) and starts afresh. */
  flush(): string {
    const context = this.tokenizer.decode(this.window.slice(0, this.emittedInWindow), this.opts);
    const text = this.tokenizer.decode(this.window, this.opts);
    this.window = [];
    this.emittedInWindow = 0;
    return text.slice(context.length);
  }
}

/**
 * Loads the tokenizer of a model folder: `tokenizer.json`, with `tokenizer_config.json` when
 * present. Returns null when the folder has no `tokenizer.json`; throws {@link ModelError} when
 * a file is unreadable or the library rejects it.
 */
export async function loadTokenizer(dir: string): Promise<TextTokenizer | null> {
  const tokenizerFile = join(dir, "tokenizer.json");
  const tokenizerJson = await readJsonIfPresent(tokenizerFile);
  if (tokenizerJson === undefined) return null;
  const configFile = join(dir, "tokenizer_config.json");
  const configJson = await readJsonIfPresent(configFile) ?? {};
  try {
    return new TextTokenizer(new Tokenizer(tokenizerJson as object, configJson as object));
  } catch (error) {
    throw new ModelError(`${tokenizerFile}: not a usable tokenizer (${(error as Error).message})`);
  }
}

/** A JSON object from a regular file of at most 64 MiB, or undefined when there is no file. */
async function readJsonIfPresent(file: string): Promise<unknown | undefined> {
  let text: string;
  try {
    const bytes = await readBoundedFile(file, TOKENIZER_JSON_LIMIT, `a ${basename(file)}`);
    text = new TextDecoder().decode(bytes);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  try {
    const json = JSON.parse(text);
    if (typeof json !== "object" || json === null || Array.isArray(json)) {
      throw new Error("not a JSON object");
    }
    return json;
  } catch (error) {
    throw new ModelError(`${file}: not valid JSON (${(error as Error).message})`);
  }
}
