/** Invariant 1 on real processes for the BF16 fixture (see helpers/cluster-golden-suite.ts). */
import { clusterGoldenSuite } from "./helpers/cluster-golden-suite.ts";
import { TINY_V3 } from "./helpers/cluster-harness.ts";

clusterGoldenSuite(TINY_V3, "given");
