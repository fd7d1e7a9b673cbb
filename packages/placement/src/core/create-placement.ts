import { Placement } from "./placement.ts";
import type { PlacementSpec } from "./placement.ts";
import { validatePlacement } from "./validate-placement.ts";

/** Builds a placement from its arrays and refuses it unless `validatePlacement` accepts it. */
export function createPlacement(spec: PlacementSpec): Placement {
  return validatePlacement(new Placement(spec));
}
