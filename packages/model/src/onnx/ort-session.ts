/**
 * Creating onnxruntime sessions for generated graphs, with the options every graph of one
 * model shares (execution provider, threads).
 */
import * as ort from "onnxruntime-node";
import { ExpertMeshError, Code } from "@expertmesh/shared";

export interface SessionOptions {
  /** onnxruntime execution provider name ("cpu", "cuda", ...). */
  executionProvider: string;
  /** Intra-op threads per session (0: onnxruntime's default). */
  threads: number;
}

export const DEFAULT_SESSION_OPTIONS: SessionOptions = { executionProvider: "cpu", threads: 0 };

export async function createSession(
  graph: Uint8Array,
  options: SessionOptions,
  label: string,
): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(graph, {
      executionProviders: [options.executionProvider],
      graphOptimizationLevel: "all",
      ...(options.threads > 0 ? { intraOpNumThreads: options.threads } : {}),
      interOpNumThreads: 1,
      executionMode: "sequential",
      // Several sessions run one after another on the same cores: threads that keep spinning
      // after a run would steal the cores from the next session.
      extra: { session: { intra_op: { allow_spinning: "0" } } },
    });
  } catch (err) {
    throw new ExpertMeshError(
      Code.INTERNAL,
      `could not create onnxruntime session for ${label} on ${options.executionProvider}`,
      { cause: err },
    );
  }
}
