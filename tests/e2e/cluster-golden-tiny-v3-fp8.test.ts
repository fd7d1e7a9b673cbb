/** Invariant 1 on real processes for the FP8 (block-scaled e4m3) fixture (see helpers/cluster-golden-suite.ts). */
import { clusterGoldenSuite } from "./helpers/cluster-golden-suite.ts";
import { TINY_V3_FP8 } from "./helpers/cluster-harness.ts";

clusterGoldenSuite(TINY_V3_FP8, "started");
