/**
 * Evaluation prompts for instruct models (`chat: true`, `eval --chat`): the model's chat template
 * is rendered once around a marker to find the text it puts before and after one user message
 * (a {@link ChatFrame}); every prompt is then
 * `beforeUser + preamble + haystack + question + afterUser + answer prefix`, so the haystack is
 * still measured and filled in tokens, and the answer prefix opens the assistant's turn.
 *
 * @module
 */

import { type ChatTemplate, renderChat } from "../model/chatTemplate.ts";
import { ModelError } from "../model/errors.ts";

/** The text a chat template writes around a single user message. */
export interface ChatFrame {
  /**
   * Text before the message: the template's opening (BOS if it writes one, a default system
   * turn) and the user turn's opening.
   */
  beforeUser: string;
  /** Text after the message: the end of the user turn and the assistant turn's opening. */
  afterUser: string;
}

/** What an engine offers for chat prompts: the frame and the ids that end the assistant's turn. */
export interface EvalChat {
  /** The model's chat frame. */
  frame: ChatFrame;
  /** Ids that end an answer (EOS and the template's end-of-turn tokens). */
  stopIds: number[];
}

/** The pieces of a task's prompt around its haystack. */
export interface PromptParts {
  /** Instruction before the haystack (may be empty). */
  preamble: string;
  /** The question after the haystack. */
  question: string;
  /** The text the model continues. */
  answerPrefix: string;
}

/** The text before and after a haystack, as `buildHaystackPrompt` takes them. */
export interface PromptFrame {
  /** Text before the haystack. */
  prefix: string;
  /** Text after the haystack. */
  suffix: string;
}

const USER_MARKER = "\u{E000}kvpolicy-user-message\u{E000}";

/**
 * Renders `chat` around a marker message and splits the text there. Throws {@link ModelError}
 * when the template does not write the message exactly once and unchanged.
 */
export function chatFrame(
  chat: ChatTemplate,
  specials: { bosToken?: string; eosToken?: string } = {},
): ChatFrame {
  const text = renderChat(chat, [{ role: "user", content: USER_MARKER }], specials);
  const at = text.indexOf(USER_MARKER);
  if (at < 0 || text.indexOf(USER_MARKER, at + 1) >= 0) {
    throw new ModelError(
      `${chat.source}: the chat template does not write the user's message once and unchanged, ` +
        "so prompts cannot be wrapped in it",
    );
  }
  return { beforeUser: text.slice(0, at), afterUser: text.slice(at + USER_MARKER.length) };
}

/**
 * The prefix and suffix of a prompt: plain, `preamble` before the haystack and
 * `question + answerPrefix` after it; in `chat`, the preamble, haystack and question form the
 * user's message and the answer prefix (without its leading spaces) starts the assistant's turn.
 */
export function promptFrame(chat: ChatFrame | null, parts: PromptParts): PromptFrame {
  if (chat === null) {
    return { prefix: parts.preamble, suffix: parts.question + parts.answerPrefix };
  }
  return {
    prefix: chat.beforeUser + parts.preamble,
    suffix: parts.question + chat.afterUser + parts.answerPrefix.trimStart(),
  };
}
