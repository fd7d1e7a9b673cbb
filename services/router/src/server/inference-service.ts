/**
 * expertmesh.v1.InferenceService handlers: decode → GenerationService → encode. Generate streams
 * chunks until the final one (finish reason + usage); its call's cancellation and deadline reach
 * the generation through the call context. GetClusterState reports the model, every attention
 * node with its last load and, when Redis is configured, the current placement.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { FinishReason as WireFinishReason, RebalanceMode } from "@expertmesh/proto";
import type {
  GenerateRequest,
  GenerateResponseSchema,
  GetClusterStateResponseSchema,
  ModelInfoSchema,
  InferenceService,
} from "@expertmesh/proto";
import { Code, ExpertMeshError, invalidArgument } from "@expertmesh/shared";
import type { ServiceImpl } from "@expertmesh/shared";
import type { Placement } from "@expertmesh/placement";
import type { AttentionNodeState } from "../clients/attention-node-client.ts";
import type {
  FinishReason,
  GenerationChunk,
  GenerationRequest,
  GenerationService,
} from "../core/generation.ts";
import { newRequestId } from "./request-id.ts";

type GenerateResponseInit = MessageInitShape<typeof GenerateResponseSchema>;
type ClusterStateInit = MessageInitShape<typeof GetClusterStateResponseSchema>;
export type ModelInfoInit = MessageInitShape<typeof ModelInfoSchema>;

export interface InferenceServiceDeps {
  readonly generation: GenerationService;
  readonly modelInfo: ModelInfoInit;
  readonly attentionNodes: () => readonly AttentionNodeState[];
  /** The current placement; undefined without Redis or before the first one is published. */
  readonly placement?: () => Promise<Placement | undefined>;
}

const FINISH_REASON: Readonly<Record<FinishReason, WireFinishReason>> = {
  stop: WireFinishReason.STOP,
  length: WireFinishReason.LENGTH,
  cancelled: WireFinishReason.CANCELLED,
  error: WireFinishReason.ERROR,
};

export function inferenceServiceImpl(deps: InferenceServiceDeps): ServiceImpl<typeof InferenceService> {
  const { generation } = deps;
  return {
    async *generate(request, context) {
      const req = decodeGenerateRequest(request, generation.model.name, context.deadline);
      for await (const chunk of generation.generate(req, context.signal)) {
        yield encodeChunk(req.requestId, chunk);
      }
    },
    async getClusterState() {
      const state: ClusterStateInit = {
        model: deps.modelInfo,
        rebalanceMode: RebalanceMode.UNSPECIFIED,
        attentionNodes: deps.attentionNodes().map((n) => ({
          id: n.id,
          address: n.address,
          status: n.status,
          running: n.load?.running ?? 0,
          waiting: n.load?.waiting ?? 0,
          freeKvBlocks: n.load?.freeKvBlocks ?? 0,
          totalKvBlocks: n.load?.totalKvBlocks ?? 0,
        })),
      };
      const placement = await deps.placement?.();
      if (placement !== undefined) Object.assign(state, encodePlacement(placement));
      return state;
    },
  };
}

/** A GenerateRequest as the generation interface takes it (proto zero values are defaults). */
export function decodeGenerateRequest(
  request: GenerateRequest,
  servedModel: string,
  deadline: number | undefined,
): GenerationRequest {
  if (request.model !== "" && request.model !== servedModel) {
    throw new ExpertMeshError(
      Code.NOT_FOUND,
      `model '${request.model}' is not served here (this cluster serves '${servedModel}')`,
      {
        details: { field: "model" },
      },
    );
  }
  const prompt = request.prompt;
  if (prompt.case === undefined) throw invalidArgument("prompt", "set text or token_ids");
  const s = request.sampling;
  return {
    requestId: request.requestId === "" ? newRequestId("gen") : request.requestId,
    prompt: prompt.case === "text" ? { text: prompt.value } : { tokenIds: prompt.value.ids },
    sampling: {
      temperature: s?.temperature ?? 0,
      // 0 is proto's "unset": disabled.
      topP: s === undefined || s.topP === 0 ? 1 : s.topP,
      topK: s?.topK ?? 0,
      ...(s?.minP === undefined ? {} : { minP: s.minP }),
      ...(s?.seed === undefined ? {} : { seed: s.seed }),
      maxTokens: s?.maxTokens ?? 0,
      stop: s?.stop ?? [],
      stopTokenIds: s?.stopTokenIds ?? [],
      ignoreEos: s?.ignoreEos ?? false,
    },
    logprobs: request.logprobs,
    topLogprobs: request.topLogprobs,
    skipDetokenize: request.skipDetokenize,
    priority: "interactive",
    ...(deadline === undefined ? {} : { deadline }),
  };
}

function encodeChunk(requestId: string, chunk: GenerationChunk): GenerateResponseInit {
  return {
    requestId,
    tokenIds: chunk.tokenIds,
    text: chunk.text,
    logprobs: (chunk.logprobs ?? []).map((l) => ({
      logprob: l.logprob,
      topTokenIds: l.top.map((t) => t.tokenId),
      topLogprobs: l.top.map((t) => t.logprob),
    })),
    ...(chunk.finishReason === undefined ? {} : { finishReason: FINISH_REASON[chunk.finishReason] }),
    ...(chunk.usage === undefined ? {} : { usage: chunk.usage }),
  };
}

/** Placement version, workers with their slices, and every MoE layer's physical → logical/worker maps. */
function encodePlacement(p: Placement): Partial<ClusterStateInit> {
  const P = p.numPhysical;
  return {
    placementVersion: p.version,
    workers: p.workers.map((w) => {
      const slice = p.sliceOf(w.workerId);
      return {
        workerId: w.workerId,
        node: w.node,
        slices: p.shape.moeLayers.map((layer, l) => ({
          layer,
          physicalExpertIds: [...(slice.physical[l] ?? [])],
          logicalExpertIds: [...(slice.logical[l] ?? [])],
        })),
      };
    }),
    placement: p.shape.moeLayers.map((layer, l) => ({
      layer,
      physicalToLogical: [...p.physicalToLogical.subarray(l * P, (l + 1) * P)],
      physicalToWorker: [...p.physicalToWorker.subarray(l * P, (l + 1) * P)],
    })),
  };
}
