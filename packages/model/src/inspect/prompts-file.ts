/**
 * Inputs of `inspect`: a prompts file `{prompts: [{name, tokens, max_new_tokens, forced_tokens?}]}`
 * and, for teacher forcing, optionally a previous result file whose `greedy.generated` lists
 * are fed back instead of the model's own argmax.
 */
import { ExpertMeshError, Code } from "@expertmesh/shared";

export interface InspectPrompt {
  name: string;
  tokens: number[];
  maxNewTokens: number;
  /** Tokens to feed back when teacher-forcing (at least maxNewTokens - 1). */
  forcedTokens?: number[];
}

function bad(source: string, message: string): ExpertMeshError {
  return new ExpertMeshError(Code.INVALID_ARGUMENT, `${source}: ${message}`, { details: { file: source } });
}

function tokenList(v: unknown, source: string, where: string): number[] {
  if (!Array.isArray(v) || !v.every((t) => Number.isInteger(t) && (t as number) >= 0)) {
    throw bad(source, `${where} must be a list of non-negative integer token ids`);
  }
  return v as number[];
}

export function parsePromptsFile(json: unknown, source: string): InspectPrompt[] {
  const prompts = (json as { prompts?: unknown } | null)?.prompts;
  if (!Array.isArray(prompts) || prompts.length === 0)
    throw bad(source, `expected {"prompts": [...]} with at least one prompt`);
  return prompts.map((p: unknown, i) => {
    if (typeof p !== "object" || p === null) throw bad(source, `prompts[${i}] is not an object`);
    const o = p as Record<string, unknown>;
    const name = o.name ?? `prompt${i}`;
    if (typeof name !== "string") throw bad(source, `prompts[${i}].name must be a string`);
    const tokens = tokenList(o.tokens, source, `prompts[${i}].tokens`);
    if (tokens.length === 0) throw bad(source, `prompts[${i}].tokens is empty`);
    const maxNewTokens = o.max_new_tokens ?? 8;
    if (!Number.isInteger(maxNewTokens) || (maxNewTokens as number) < 0)
      throw bad(source, `prompts[${i}].max_new_tokens must be a non-negative integer`);
    const out: InspectPrompt = { name, tokens, maxNewTokens: maxNewTokens as number };
    if (o.forced_tokens !== undefined)
      out.forcedTokens = tokenList(o.forced_tokens, source, `prompts[${i}].forced_tokens`);
    return out;
  });
}

/**
 * Sets each prompt's forced tokens from a result file in the inspect/golden schema
 * (prompts matched by position; their tokens must be equal): its `greedy.generated`.
 */
export function forcedTokensFromResult(
  prompts: readonly InspectPrompt[],
  json: unknown,
  source: string,
): InspectPrompt[] {
  const results = (json as { prompts?: unknown } | null)?.prompts;
  if (!Array.isArray(results)) throw bad(source, `expected a result file with "prompts"`);
  if (results.length !== prompts.length)
    throw bad(source, `has ${results.length} prompts, the prompts file ${prompts.length}`);
  return prompts.map((p, i) => {
    const r = results[i] as { tokens?: unknown; greedy?: { generated?: unknown } } | null;
    const tokens = tokenList(r?.tokens, source, `prompts[${i}].tokens`);
    if (tokens.length !== p.tokens.length || tokens.some((t, j) => t !== p.tokens[j])) {
      throw bad(source, `prompts[${i}] has different prompt tokens than prompt "${p.name}"`);
    }
    return { ...p, forcedTokens: tokenList(r?.greedy?.generated, source, `prompts[${i}].greedy.generated`) };
  });
}
