import { Code, ExpertMeshError } from "@expertmesh/shared";
import type { BodyParams } from "./openai-params.ts";

/** The request's `model`: absent means the served model; another name is 404 (param "model"). */
export function checkModel(p: BodyParams, served: string): string {
  const model = p.string("model");
  if (model === undefined || model === served) return served;
  throw new ExpertMeshError(
    Code.NOT_FOUND,
    `The model \`${model}\` does not exist. This server serves \`${served}\`.`,
    {
      details: { field: "model" },
    },
  );
}
