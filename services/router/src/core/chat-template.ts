/**
 * The chat template: OpenAI-style messages → one prompt string, in DeepSeek-V3's format (what its
 * tokenizer_config.json's Jinja template renders for plain text messages):
 *
 *   {BOS}{system prompts, joined by "\n\n"}<｜User｜>{user}<｜Assistant｜>{assistant}{EOS}<｜User｜>…<｜Assistant｜>
 *
 * System (and "developer") messages go first wherever they appear; every user turn opens with
 * `<｜User｜>`, every earlier assistant turn is closed by EOS, and the prompt ends with
 * `<｜Assistant｜>` so the model writes the next assistant turn. A tokenizer's own Jinja
 * `chat_template` is not rendered (this is a DeepSeek-V3 server; the format is the model's).
 * Tokenizers without the role tokens (the synthetic ones) encode them as plain text, which is
 * just as deterministic.
 */
import { invalidArgument } from "@expertmesh/shared";

export type ChatRole = "system" | "developer" | "user" | "assistant";

export interface ChatMessage {
  readonly role: ChatRole;
  readonly content: string;
}

export const USER_TAG = "<｜User｜>";
export const ASSISTANT_TAG = "<｜Assistant｜>";

export interface ChatSpecialTokens {
  /** BOS as text ("" when the tokenizer has none). */
  readonly bos: string;
  /** EOS as text, closing each earlier assistant turn ("" when none). */
  readonly eos: string;
}

/** The prompt text for `messages` (BOS included); INVALID_ARGUMENT "messages" when there is nothing to answer. */
export function renderChatPrompt(messages: readonly ChatMessage[], tokens: ChatSpecialTokens): string {
  if (messages.length === 0) throw invalidArgument("messages", "must hold at least one message");
  const system = messages.filter((m) => m.role === "system" || m.role === "developer").map((m) => m.content);
  const turns = messages.filter((m) => m.role === "user" || m.role === "assistant");
  if (turns.length === 0)
    throw invalidArgument("messages", "must hold at least one user or assistant message");
  let text = tokens.bos + system.join("\n\n");
  for (const m of turns) {
    text += m.role === "user" ? `${USER_TAG}${m.content}` : `${ASSISTANT_TAG}${m.content}${tokens.eos}`;
  }
  return text + ASSISTANT_TAG;
}
