/**
 * Design invariant 1 on real processes: the golden protocol (prefill + greedy decoding, capturing
 * logits, routing and hidden states) with the model loaded WITHOUT routed experts and every MoE
 * layer dispatched over gRPC to expert-worker processes. With float32 on the wire the result
 * passes compare_golden.py --require-all; with BF16 on the wire the greedy tokens are golden's.
 * Two topologies: 8 workers on 8 nodes (one expert group per node: a token reaches up to
 * topk_group = 4 nodes) and 4 workers on 2 nodes (in-process, and through `expertmesh
 * inspect-cluster` for the float32 run).
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { RemoteRoutedExperts } from "@expertmesh/dispatch";
import type { RowDtype } from "@expertmesh/dispatch";
import { inspectPrompts, loadModel, parsePromptsFile } from "@expertmesh/model";
import type { DeepSeekModel, InspectPrompt, InspectReport } from "@expertmesh/model";
import { WireDtype } from "@expertmesh/proto";
import {
  compareGolden,
  defaultPlacement,
  expertmesh,
  fixtureShape,
  goldenGreedy,
  startWorkers,
} from "./cluster-harness.ts";
import type { WorkerProcesses } from "./cluster-harness.ts";

/**
 * `cliWorkers`: how `inspect-cluster` gets its workers in the 4-on-2 case — "given": the test's
 * own (--worker-addresses + --placement); "started": its own processes (--workers 4 --nodes 2).
 */
export function clusterGoldenSuite(fixture: string, cliWorkers: "given" | "started"): void {
  const name = basename(fixture);
  const shape = fixtureShape(fixture);
  const golden = join(fixture, "golden.json");

  describe(`${name}: routed experts on expert-worker processes vs golden.json`, () => {
    let tmp: string;
    let prompts: InspectPrompt[];
    let model: DeepSeekModel | undefined;

    before(async () => {
      tmp = await mkdtemp(join(tmpdir(), `expertmesh-e2e-golden-${name}-`));
      const path = join(fixture, "prompts.json");
      prompts = parsePromptsFile(JSON.parse(await readFile(path, "utf8")) as unknown, path);
    });
    after(async () => {
      await model?.release();
      await rm(tmp, { recursive: true, force: true });
    });

    /** The golden protocol through `workers` with `dtype` on the wire; the most nodes any token reached. */
    const inspectOver = async (
      workers: WorkerProcesses,
      dtype: RowDtype,
    ): Promise<{ report: InspectReport; maxNodes: number }> => {
      let maxNodes = 0;
      const remote = new RemoteRoutedExperts({
        placement: workers.placement,
        addresses: workers.addresses,
        hiddenSize: shape.hiddenSize,
        rowDtype: dtype,
        combineDtype: dtype === WireDtype.FLOAT32 ? WireDtype.FLOAT32 : WireDtype.BF16,
        strictNodeLimit: true,
        onNodesPerRow: (_layer, nodes) => {
          for (const n of nodes) maxNodes = Math.max(maxNodes, n);
        },
      });
      try {
        await remote.waitForReady(10_000);
        // One model for every run: only where its routed experts run changes.
        if (model === undefined)
          model = await loadModel(fixture, { experts: "none", routedExperts: remote, threads: 1 });
        else model.setRoutedExperts(remote);
        const report = await inspectPrompts(model, prompts);
        assert.ok(
          remote.stats.runs > 0 && remote.stats.requests >= remote.stats.runs,
          "every MoE layer went through the workers",
        );
        return { report, maxNodes };
      } finally {
        await remote.close();
      }
    };

    const assertGoldenGreedy = (report: InspectReport, what: string): void => {
      const want = goldenGreedy(fixture);
      for (const p of report.prompts)
        assert.deepEqual(p.greedy.generated, want.get(p.name), `${what}: greedy tokens of ${p.name}`);
    };

    it("8 workers on 8 nodes: float32 wire passes compare_golden; bf16 wire gives golden's greedy tokens", async () => {
      const workers = await startWorkers(fixture, defaultPlacement(shape, 8, 8));
      try {
        const f32 = await inspectOver(workers, WireDtype.FLOAT32);
        const out = join(tmp, "8x8-float32.json");
        await writeFile(out, JSON.stringify(f32.report));
        const result = await compareGolden(golden, out);
        assert.equal(result.failed, 0, result.output);
        assert.ok(result.passed > 0);
        // One group per node: tokens spread over several nodes, never more than topk_group.
        assert.ok(
          f32.maxNodes >= 2 && f32.maxNodes <= shape.topkGroup,
          `max nodes per token ${f32.maxNodes}`,
        );

        const bf16 = await inspectOver(workers, WireDtype.BF16);
        assertGoldenGreedy(bf16.report, "bf16 wire, 8 workers on 8 nodes");
      } finally {
        await workers.stop();
      }
    });

    it("4 workers on 2 nodes: `expertmesh inspect-cluster --wire float32` passes compare_golden; bf16 wire gives golden's greedy tokens", async () => {
      const workers = await startWorkers(fixture, defaultPlacement(shape, 4, 2));
      try {
        const out = join(tmp, "4x2-float32.json");
        const cli = expertmesh([
          "inspect-cluster",
          "--model",
          fixture,
          "--prompts",
          join(fixture, "prompts.json"),
          "--out",
          out,
          "--wire",
          "float32",
          ...(cliWorkers === "started"
            ? ["--workers", "4", "--nodes", "2"]
            : [
                "--worker-addresses",
                [...workers.addresses].map(([id, address]) => `${id}=${address}`).join(","),
                "--placement",
                workers.placementFile,
              ]),
        ]);
        const exit = await cli.exited;
        assert.equal(exit.code, 0, cli.output());
        assert.match(cli.output(), /at most [12] nodes per token \(topk_group \d+\)/);
        const result = await compareGolden(golden, out);
        assert.equal(result.failed, 0, result.output);

        const bf16 = await inspectOver(workers, WireDtype.BF16);
        assertGoldenGreedy(bf16.report, "bf16 wire, 4 workers on 2 nodes");
        assert.ok(bf16.maxNodes <= 2);
      } finally {
        await workers.stop();
      }
    });
  });
}
