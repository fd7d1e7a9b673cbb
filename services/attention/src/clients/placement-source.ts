/**
 * Where the attention node gets its placement: EXPERTMESH_PLACEMENT_FILE, else the current
 * version in Redis. The placement must describe this model's MoE layers and expert groups.
 */
import { readFile } from "node:fs/promises";
import type { ModelConfig } from "@expertmesh/model";
import { PlacementKeys, PlacementStore, placementFromJSON } from "@expertmesh/placement";
import type { Placement } from "@expertmesh/placement";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { Redis } from "ioredis";

export interface PlacementSourceOptions {
  readonly placementFile: string | undefined;
  readonly redisUrl: string | undefined;
  readonly cluster: string;
}

/** The placement to serve, read once at startup (a Redis connection is opened and closed here). */
export async function readPlacement(options: PlacementSourceOptions): Promise<Placement> {
  const { placementFile, redisUrl } = options;
  if (placementFile !== undefined) {
    let text: string;
    try {
      text = await readFile(placementFile, "utf8");
    } catch (err) {
      throw new ExpertMeshError(
        Code.FAILED_PRECONDITION,
        `cannot read EXPERTMESH_PLACEMENT_FILE ${placementFile}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    return placementFromJSON(text);
  }
  if (redisUrl === undefined) {
    throw new ExpertMeshError(
      Code.FAILED_PRECONDITION,
      "no placement source: set EXPERTMESH_PLACEMENT_FILE (a placement JSON) or EXPERTMESH_REDIS_URL (reads the current placement)",
    );
  }
  const keys = new PlacementKeys({ cluster: options.cluster });
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 3 });
  let placement: Placement | undefined;
  try {
    await redis.connect();
    placement = await new PlacementStore(redis, { keys }).current();
    await redis.quit();
  } catch (err) {
    redis.disconnect();
    // A stored placement that is invalid keeps its own code; a Redis failure is UNAVAILABLE.
    if (err instanceof ExpertMeshError) throw err;
    throw new ExpertMeshError(
      Code.UNAVAILABLE,
      `cannot read the current placement from Redis: ${(err as Error).message}`,
      { cause: err },
    );
  }
  if (placement === undefined) {
    throw new ExpertMeshError(
      Code.FAILED_PRECONDITION,
      `no placement published in Redis (${keys.current} is unset): publish one, or set EXPERTMESH_PLACEMENT_FILE`,
    );
  }
  return placement;
}

/** FAILED_PRECONDITION unless the placement's shape is this model's MoE part. */
export function checkPlacementMatchesModel(placement: Placement, config: ModelConfig): void {
  const moeLayers = Array.from(
    { length: config.numLayers - config.firstKDenseReplace },
    (_, i) => config.firstKDenseReplace + i,
  );
  const shape = placement.shape;
  const problems: string[] = [];
  if (shape.moeLayers.join(",") !== moeLayers.join(","))
    problems.push(`MoE layers ${shape.moeLayers.join(",")} vs the model's ${moeLayers.join(",")}`);
  if (shape.nRoutedExperts !== config.nRoutedExperts)
    problems.push(`${shape.nRoutedExperts} routed experts vs ${config.nRoutedExperts}`);
  if (shape.nGroup !== config.nGroup) problems.push(`${shape.nGroup} expert groups vs ${config.nGroup}`);
  if (shape.topkGroup !== config.topkGroup)
    problems.push(`topk_group ${shape.topkGroup} vs ${config.topkGroup}`);
  if (problems.length > 0) {
    throw new ExpertMeshError(
      Code.FAILED_PRECONDITION,
      `placement v${placement.version} does not fit the model: ${problems.join("; ")}`,
    );
  }
}
