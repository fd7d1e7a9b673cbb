/** Builds SubmitBatchRequest messages for the batch tests: strings become text prompts. */
import { create } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { SubmitBatchRequestSchema } from "@expertmesh/proto";
import type { GenerateRequestSchema, SubmitBatchRequest } from "@expertmesh/proto";

export type ItemInit = MessageInitShape<typeof GenerateRequestSchema>;

export function batchOf(
  items: (string | ItemInit)[],
  init: { batchId?: string; maxAttempts?: number; labels?: Record<string, string> } = {},
): SubmitBatchRequest {
  return create(SubmitBatchRequestSchema, {
    ...init,
    requests: items.map((item): ItemInit =>
      typeof item === "string" ? { prompt: { case: "text", value: item } } : item,
    ),
  });
}
