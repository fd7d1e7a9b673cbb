#!/usr/bin/env node
/**
 * `expertmesh` — the one command-line entry point. Each subcommand lives in
 * `commands/<name>.ts` and exports `run(args)`; they are loaded lazily so that
 * `expertmesh --help` does not pay for onnxruntime.
 */
import { ExpertMeshError } from "@expertmesh/shared";

interface CommandModule {
  run(args: string[]): Promise<void>;
}

const COMMANDS: Readonly<Record<string, { summary: string; load: () => Promise<CommandModule> }>> = {
  "make-model": {
    summary: "write a synthetic DeepSeek-V3-architecture checkpoint (HF layout)",
    load: () => import("./commands/make-model.ts"),
  },
  generate: {
    summary: "stream tokens for one prompt from the single-process engine",
    load: () => import("./commands/generate.ts"),
  },
  bench: {
    summary: "benchmark the engine on the bench preset (prints JSON)",
    load: () => import("./commands/bench.ts"),
  },
  inspect: {
    summary: "run prompts.json through a checkpoint and write golden.json-schema results",
    load: () => import("./commands/inspect.ts"),
  },
  "inspect-cluster": {
    summary: "inspect with the routed experts on expert-worker processes (golden protocol over gRPC)",
    load: () => import("./cluster/inspect-cluster.ts"),
  },
  up: {
    summary: "start a local cluster: Redis, expert-workers and attention nodes as processes",
    load: () => import("./commands/up.ts"),
  },
  down: {
    summary: "stop the local cluster started by 'up' (its state file)",
    load: () => import("./commands/down.ts"),
  },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(12)} ${c.summary}`);
  return `usage: expertmesh <command> [options]\n\ncommands:\n${lines.join("\n")}\n\nRun 'expertmesh <command> --help' for a command's options.`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    console.error(`expertmesh: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  try {
    await (await command.load()).run(rest);
    return 0;
  } catch (err) {
    // Expected failures (bad flags, bad checkpoints) print their message; anything else its stack.
    if (err instanceof ExpertMeshError) console.error(`expertmesh ${name}: ${err.message}`);
    else console.error(err);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
