/**
 * Chat templates: the Jinja template a model ships (`tokenizer.chat_template` in GGUF,
 * `chat_template` in `tokenizer_config.json`) rendered with `@huggingface/jinja`, as Hugging Face's
 * `apply_chat_template(..., add_generation_prompt=True)` does, and the end-of-turn tokens that stop
 * generation.
 *
 * @module
 */

import { Template } from "@huggingface/jinja";
import { ModelError } from "./errors.ts";
import type { TextTokenizer } from "./tokenizer.ts";
import type { ModelConfig } from "./types.ts";

/** One chat message. */
export interface ChatMessage {
  /** `system`, `user` or `assistant`. */
  role: "system" | "user" | "assistant";
  /** The message text. */
  content: string;
}

/** A model's chat template, parsed once. */
export interface ChatTemplate {
  /** Where it came from (file and field), for error messages. */
  source: string;
  /** The template text. */
  text: string;
  /** The parsed template. */
  template: Template;
}

/** Known end-of-turn markers of common templates (ChatML, Llama 3, Gemma, Phi, Llama 2). */
const END_OF_TURN_MARKERS = ["<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "</s>"];

/** Parses a template; a syntax error is a {@link ModelError} naming `source`. */
export function parseChatTemplate(text: string, source: string): ChatTemplate {
  try {
    return { source, text, template: new Template(text) };
  } catch (error) {
    throw new ModelError(
      `${source}: the chat template does not parse (${(error as Error).message})`,
    );
  }
}

/**
 * The chat template of `tokenizer_config.json`'s `chat_template` field: a string, or a list of
 * `{name, template}` of which the one named `default` is taken. Null when absent.
 */
export function chatTemplateFromConfig(config: unknown, file: string): ChatTemplate | null {
  if (typeof config !== "object" || config === null) return null;
  const value = (config as Record<string, unknown>).chat_template;
  if (value === undefined || value === null) return null;
  if (typeof value === "string") return parseChatTemplate(value, `${file}: "chat_template"`);
  if (Array.isArray(value)) {
    const named = value.find((t) => t?.name === "default") ?? value[0];
    if (typeof named?.template === "string") {
      return parseChatTemplate(named.template, `${file}: "chat_template"`);
    }
  }
  throw new ModelError(`${file}: "chat_template" must be a string or a list of {name, template}`);
}

/**
 * Renders `messages` followed by the assistant's turn opening (`add_generation_prompt`), with the
 * tokenizer's BOS/EOS strings available to the template as `bos_token` / `eos_token`.
 */
export function renderChat(
  chat: ChatTemplate,
  messages: readonly ChatMessage[],
  specials: { bosToken?: string; eosToken?: string } = {},
): string {
  try {
    return chat.template.render({
      messages: messages.map((m) => ({ ...m })),
      add_generation_prompt: true,
      bos_token: specials.bosToken ?? "",
      eos_token: specials.eosToken ?? "",
    });
  } catch (error) {
    throw new ModelError(`${chat.source}: the chat template failed (${(error as Error).message})`);
  }
}

/** The BOS / EOS strings a template may write (`bos_token`, `eos_token`), from the model's ids. */
export function chatSpecialTokens(
  config: ModelConfig,
  tokenizer: TextTokenizer,
): { bosToken?: string; eosToken?: string } {
  const { bosTokenId, eosTokenIds } = config;
  return {
    bosToken: bosTokenId === null ? undefined : tokenizer.tokenText(bosTokenId),
    eosToken: eosTokenIds.length > 0 ? tokenizer.tokenText(eosTokenIds[0]) : undefined,
  };
}

/**
 * Token ids that end an assistant turn: the model's EOS ids plus every known end-of-turn marker
 * that the template writes and the vocabulary holds as one token.
 */
export function endOfTurnIds(
  chat: ChatTemplate,
  tokenizer: TextTokenizer,
  eosIds: readonly number[],
): number[] {
  const ids = new Set(eosIds);
  for (const marker of END_OF_TURN_MARKERS) {
    if (!chat.text.includes(marker)) continue;
    const id = tokenizer.tokenId(marker);
    if (id !== undefined) ids.add(id);
  }
  return [...ids];
}
