/**
 * Static topology settings are lists of `id=host:port` entries (EXPERTMESH_WORKER_ADDRESSES,
 * EXPERTMESH_ATTENTION_ADDRESSES); one parser checks them for every service.
 */
import { Code, ExpertMeshError } from "../errors.ts";

export interface AddressMapOptions {
  /** The environment variable the entries came from, named in every error. */
  readonly variable: string;
  /** How the id is called in the expected form: "workerId" → `workerId=host:port`. */
  readonly idName: string;
  /** What one entry is, for the duplicate error: "worker" → `worker 'w0' is listed twice`. */
  readonly member: string;
  /** When set, an empty list is refused with this explanation. */
  readonly emptyMessage?: string;
}

const ADDRESS = /^[^=\s]+=[^=\s]+:\d{1,5}$/;

/** `["w0=host:port", …]` → id → "host:port"; INVALID_ARGUMENT on a malformed or repeated entry. */
export function parseAddressMap(entries: readonly string[], options: AddressMapOptions): Map<string, string> {
  const { variable } = options;
  if (entries.length === 0 && options.emptyMessage !== undefined) {
    throw new ExpertMeshError(Code.INVALID_ARGUMENT, `${variable}: ${options.emptyMessage}`, {
      details: { [variable]: "" },
    });
  }
  const out = new Map<string, string>();
  for (const entry of entries) {
    if (!ADDRESS.test(entry)) {
      throw new ExpertMeshError(
        Code.INVALID_ARGUMENT,
        `${variable}: entry '${entry}' is not ${options.idName}=host:port`,
        { details: { [variable]: entry } },
      );
    }
    const at = entry.indexOf("=");
    const id = entry.slice(0, at);
    if (out.has(id)) {
      throw new ExpertMeshError(
        Code.INVALID_ARGUMENT,
        `${variable}: ${options.member} '${id}' is listed twice`,
        {
          details: { [variable]: id },
        },
      );
    }
    out.set(id, entry.slice(at + 1));
  }
  return out;
}
