import type { EngineRequest, FinishReason } from "./engine-request.ts";

/**
 * Whether a request is done after its newest token was appended (vLLM's check_stop):
 * a stop token id or the model's EOS (unless ignoreEos) → "stop"; maxTokens generated or the
 * context reaching maxModelLen → "length". Stop wins when both hold.
 */
export function checkStop(
  request: EngineRequest,
  eosTokenId: number | null,
  maxModelLen: number,
): FinishReason | null {
  const out = request.outputTokenIds;
  const last = out[out.length - 1];
  if (last === undefined) return null;
  const { sampling } = request;
  if (sampling.stopTokenIds.has(last)) return "stop";
  if (!sampling.ignoreEos && eosTokenId !== null && last === eosTokenId) return "stop";
  if (out.length >= sampling.maxTokens || request.numTokens >= maxModelLen) return "length";
  return null;
}
