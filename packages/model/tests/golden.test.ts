/**
 * End-to-end exactness: inspect (in-process) on both fixtures, free-running and teacher-forced,
 * checked by the fixtures' own compare_golden.py with --require-all.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, type DeepSeekModel } from "../src/runtime/deepseek-model.ts";
import { inspectPrompts } from "../src/inspect/inspect.ts";
import { parsePromptsFile } from "../src/inspect/prompts-file.ts";
import { COMPARE_GOLDEN, FIXTURE_NAMES, fixtureDir, readGolden } from "./fixtures.ts";

function compare(golden: string, candidate: string): { status: number | null; out: string } {
  const r = spawnSync(
    "python3",
    [COMPARE_GOLDEN, "--require-all", "--golden", golden, "--candidate", candidate],
    { encoding: "utf8" },
  );
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

for (const fixture of FIXTURE_NAMES) {
  describe(`inspect on ${fixture} matches golden.json`, () => {
    const dir = fixtureDir(fixture);
    const tmp = mkdtempSync(join(tmpdir(), `inspect-${fixture}-`));
    let model: DeepSeekModel;
    before(async () => {
      model = await loadModel(dir, { threads: 1 });
    });
    after(async () => {
      await model.release();
      rmSync(tmp, { recursive: true, force: true });
    });

    it("free-running", async () => {
      const prompts = parsePromptsFile(
        JSON.parse(readFileSync(join(dir, "prompts.json"), "utf8")),
        "prompts.json",
      );
      const out = join(tmp, "free.json");
      writeFileSync(out, JSON.stringify(await inspectPrompts(model, prompts)));
      const r = compare(join(dir, "golden.json"), out);
      assert.match(r.out, /\d+ passed, 0 failed/, r.out);
      assert.equal(r.status, 0, r.out);
    });

    it("teacher-forced with the golden tokens written into a prompts file", async () => {
      // the test may read golden.json; product code only sees a prompts file with forced_tokens
      const golden = readGolden(fixture);
      const promptsJson = JSON.parse(readFileSync(join(dir, "prompts.json"), "utf8")) as {
        prompts: Record<string, unknown>[];
      };
      promptsJson.prompts.forEach((p, i) => (p.forced_tokens = golden.prompts[i]?.greedy.generated));
      const prompts = parsePromptsFile(promptsJson, "forced prompts");
      const report = await inspectPrompts(model, prompts, { teacherForce: true });
      report.prompts.forEach((p, i) =>
        assert.deepEqual(p.greedy.fed_tokens, golden.prompts[i]?.greedy.generated.slice(0, -1)),
      );
      const out = join(tmp, "forced.json");
      writeFileSync(out, JSON.stringify(report));
      const r = compare(join(dir, "golden.json"), out);
      assert.match(r.out, /\d+ passed, 0 failed/, r.out);
      assert.equal(r.status, 0, r.out);
    });
  });
}
