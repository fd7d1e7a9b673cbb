import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ExpertMeshError } from "@expertmesh/shared";
import { run } from "./inspect.ts";

// <repo>/../shared/fixtures, the same locally and in CI
const SHARED = resolve(dirname(fileURLToPath(import.meta.url)), "../../../../../shared");
const FIXTURE = join(SHARED, "fixtures", "tiny-v3");

describe("expertmesh inspect", () => {
  const tmp = mkdtempSync(join(tmpdir(), "inspect-cli-"));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it("teacher-forces from a previous result file and writes a file compare_golden accepts", async () => {
    const out = join(tmp, "out.json");
    // the test may hand golden.json over as "a previous result file": it has the same schema
    await run([
      "--model",
      FIXTURE,
      "--prompts",
      join(FIXTURE, "prompts.json"),
      "--out",
      out,
      "--threads",
      "1",
      "--forced-from",
      join(FIXTURE, "golden.json"),
    ]);
    const result = JSON.parse(readFileSync(out, "utf8")) as {
      prompts: { greedy: { fed_tokens?: number[] } }[];
    };
    assert.equal(result.prompts.length, 3);
    assert.equal(result.prompts[0]?.greedy.fed_tokens?.length, 7);
    const cmp = spawnSync(
      "python3",
      [
        join(SHARED, "tools", "compare_golden.py"),
        "--require-all",
        "--golden",
        join(FIXTURE, "golden.json"),
        "--candidate",
        out,
      ],
      {
        encoding: "utf8",
      },
    );
    assert.match(cmp.stdout, / 0 failed/, cmp.stdout + cmp.stderr);
    assert.equal(cmp.status, 0);
  });

  it("rejects missing options, --teacher-force without forced tokens, and bad prompts files", async () => {
    await assert.rejects(
      run(["--model", FIXTURE]),
      (e: unknown) => e instanceof ExpertMeshError && /--prompts is required/.test(e.message),
    );
    await assert.rejects(run(["--bogus"]), ExpertMeshError);
    const out = join(tmp, "x.json");
    await assert.rejects(
      run([
        "--model",
        FIXTURE,
        "--prompts",
        join(FIXTURE, "prompts.json"),
        "--out",
        out,
        "--threads",
        "1",
        "--teacher-force",
      ]),
      /teacher forcing needs at least 7 forced tokens/,
    );
    const bad = join(tmp, "bad.json");
    writeFileSync(bad, JSON.stringify({ prompts: [{ name: "p", tokens: [] }] }));
    await assert.rejects(run(["--model", FIXTURE, "--prompts", bad, "--out", out]), /tokens is empty/);
  });
});
