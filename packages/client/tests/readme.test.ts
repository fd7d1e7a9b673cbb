/**
 * The README's examples are programs: every ```ts block is written to its own file that imports
 * "@expertmesh/client" (linked into a temporary node_modules), and run with `node --import tsx`
 * against a real gRPC server (the echo router) named by EXPERTMESH_ADDRESS. Docs that drift
 * from the API fail here.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { startEchoRouter } from "./echo-router.ts";
import type { EchoRouter } from "./echo-router.ts";

const packageRoot = dirname(dirname(fileURLToPath(import.meta.url)));

interface Example {
  heading: string;
  code: string;
}

/** The ```ts blocks of a Markdown text, each with the `##` heading it sits under. */
export function extractExamples(markdown: string): Example[] {
  const examples: Example[] = [];
  let heading = "(top)";
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    if (line.startsWith("## ")) heading = line.slice(3).trim();
    if (line.trim() !== "```ts") continue;
    const body: string[] = [];
    for (i++; i < lines.length && (lines[i] as string).trim() !== "```"; i++) body.push(lines[i] as string);
    examples.push({ heading, code: body.join("\n") + "\n" });
  }
  return examples;
}

/**
 * Runs every example module in one child process (one tsx start-up instead of one per example),
 * in order, each framed by markers so its output and outcome can be told apart.
 */
const RUNNER = `
import { pathToFileURL } from "node:url";
for (const file of JSON.parse(process.argv[2])) {
  process.stdout.write("\\n@@start " + file + "\\n");
  try {
    await import(pathToFileURL(file).href);
    process.stdout.write("\\n@@ok " + file + "\\n");
  } catch (error) {
    process.stdout.write("\\n@@failed " + file + "\\n" + (error instanceof Error ? error.stack : String(error)) + "\\n");
  }
}
`;

interface Outcome {
  ok: boolean;
  output: string;
}

function runExamples(
  runner: string,
  files: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ outcomes: Map<string, Outcome>; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--import", "tsx", runner, JSON.stringify(files)],
      { cwd: packageRoot, env, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 },
      (_error, stdout, stderr) => {
        const outcomes = new Map<string, Outcome>();
        for (const section of stdout.split("\n@@start ").slice(1)) {
          const file = section.slice(0, section.indexOf("\n"));
          const ok = section.includes(`\n@@ok ${file}\n`);
          outcomes.set(file, { ok, output: section.slice(file.length + 1).replace(`\n@@ok ${file}\n`, "") });
        }
        resolve({ outcomes, stderr });
      },
    );
  });
}

const examples = extractExamples(await readFile(join(packageRoot, "README.md"), "utf8"));

describe("README examples", () => {
  let router: EchoRouter;
  let dir: string;

  let outcomes: Map<string, Outcome>;
  let stderr: string;
  const files = examples.map((_, i) => `example-${i + 1}.mts`);

  before(async () => {
    router = await startEchoRouter();
    dir = await mkdtemp(join(tmpdir(), "expertmesh-readme-"));
    await mkdir(join(dir, "node_modules", "@expertmesh"), { recursive: true });
    await symlink(packageRoot, join(dir, "node_modules", "@expertmesh", "client"), "dir");
    for (const [i, example] of examples.entries())
      await writeFile(join(dir, files[i] as string), example.code);
    await writeFile(join(dir, "run-examples.mts"), RUNNER);
    ({ outcomes, stderr } = await runExamples(
      join(dir, "run-examples.mts"),
      files.map((f) => join(dir, f)),
      { ...process.env, EXPERTMESH_ADDRESS: router.address },
    ));
  });
  after(async () => {
    await router.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("has examples to run", () => {
    assert.ok(examples.length >= 5, `found ${examples.length} examples`);
    for (const example of examples) assert.match(example.code, /from "@expertmesh\/client"/);
  });

  for (const [i, example] of examples.entries()) {
    it(`example ${i + 1} (${example.heading}) runs`, () => {
      const outcome = outcomes.get(join(dir, files[i] as string));
      assert.ok(outcome !== undefined, `example ${i + 1} never ran:\n${stderr}`);
      assert.ok(outcome.ok, `example ${i + 1} failed:\n${outcome.output}\n${stderr}`);
      assert.notEqual(outcome.output.trim(), "", "an example shows what it did");
    });
  }
});
