import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { renderChatPrompt } from "./chat-template.ts";

const tokens = { bos: "<BOS>", eos: "<EOS>" };

describe("renderChatPrompt", () => {
  it("renders DeepSeek-V3's format: BOS, system first, closed assistant turns, open assistant turn", () => {
    const text = renderChatPrompt(
      [
        { role: "user", content: "Hi" },
        { role: "system", content: "Be brief." },
        { role: "assistant", content: "Hello!" },
        { role: "user", content: "Bye" },
      ],
      tokens,
    );
    assert.equal(text, "<BOS>Be brief.<｜User｜>Hi<｜Assistant｜>Hello!<EOS><｜User｜>Bye<｜Assistant｜>");
  });

  it("rejects messages with nothing to answer", () => {
    const field = (e: unknown) =>
      e instanceof ExpertMeshError && e.code === Code.INVALID_ARGUMENT && e.details.field === "messages";
    assert.throws(() => renderChatPrompt([], tokens), field);
    assert.throws(() => renderChatPrompt([{ role: "system", content: "x" }], tokens), field);
  });
});
