import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  Code,
  ExpertMeshError,
  boolOption,
  defineConfig,
  describeConfig,
  durationOption,
  enumOption,
  formatDuration,
  intOption,
  listOption,
  loadConfig,
  numberOption,
  parseDuration,
  stringOption,
} from "@expertmesh/shared";
import type { ConfigValues } from "@expertmesh/shared";

const WorkerConfig = defineConfig({
  port: intOption({
    env: "EXPERTMESH_PORT",
    default: 0,
    min: 0,
    max: 65535,
    doc: "gRPC port (0 picks a free one)",
  }),
  logLevel: enumOption({
    env: "EXPERTMESH_LOG_LEVEL",
    values: ["debug", "info", "warn", "error"],
    default: "info",
    doc: "log level",
  }),
  redisUrl: stringOption({
    env: "EXPERTMESH_REDIS_URL",
    optional: true,
    secret: true,
    doc: "Redis for load windows",
  }),
  drainTimeoutMs: durationOption({
    env: "EXPERTMESH_DRAIN_TIMEOUT",
    default: "30s",
    min: "0",
    max: "10m",
    doc: "drain deadline",
  }),
  gamma: numberOption({ env: "EXPERTMESH_BIAS_GAMMA", default: 0.001, min: 0, doc: "bias update speed γ" }),
  useCuda: boolOption({ env: "EXPERTMESH_USE_CUDA", default: false, doc: "run experts on the CUDA EP" }),
  peers: listOption({ env: "EXPERTMESH_PEERS", default: [], doc: "peer addresses | host:port" }),
  node: stringOption({ env: "EXPERTMESH_NODE", doc: "routing node label" }),
  maxRows: intOption({ env: "EXPERTMESH_MAX_ROWS", optional: true, min: 1, doc: "row cap per dispatch" }),
});

const required = { EXPERTMESH_NODE: "n0" };

function configError(fn: () => unknown): ExpertMeshError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ExpertMeshError, `expected ExpertMeshError, got ${String(err)}`);
    assert.equal(err.code, Code.INVALID_ARGUMENT);
    return err;
  }
  assert.fail("expected loadConfig to throw");
}

describe("loadConfig", () => {
  it("fills defaults and leaves optional options undefined", () => {
    const config = loadConfig(WorkerConfig, required);
    assert.deepEqual(
      { ...config },
      {
        port: 0,
        logLevel: "info",
        redisUrl: undefined,
        drainTimeoutMs: 30_000,
        gamma: 0.001,
        useCuda: false,
        peers: [],
        node: "n0",
        maxRows: undefined,
      },
    );
    assert.ok(Object.isFrozen(config));
    assert.ok(Object.isFrozen(config.peers));
  });

  it("parses every option kind from the environment", () => {
    const config = loadConfig(WorkerConfig, {
      EXPERTMESH_PORT: "50051",
      EXPERTMESH_LOG_LEVEL: "DEBUG",
      EXPERTMESH_REDIS_URL: "redis://:pw@redis:6379/0",
      EXPERTMESH_DRAIN_TIMEOUT: "1m30s",
      EXPERTMESH_BIAS_GAMMA: "2.5e-3",
      EXPERTMESH_USE_CUDA: "yes",
      EXPERTMESH_PEERS: " a:1, b:2 ,,c:3 ",
      EXPERTMESH_NODE: "node-7",
      EXPERTMESH_MAX_ROWS: "4096",
      PATH: "/usr/bin", // other variables are none of the registry's business
    });
    assert.equal(config.port, 50051);
    assert.equal(config.logLevel, "debug");
    assert.equal(config.redisUrl, "redis://:pw@redis:6379/0");
    assert.equal(config.drainTimeoutMs, 90_000);
    assert.equal(config.gamma, 0.0025);
    assert.equal(config.useCuda, true);
    assert.deepEqual(config.peers, ["a:1", "b:2", "c:3"]);
    assert.equal(config.node, "node-7");
    assert.equal(config.maxRows, 4096);
  });

  it("treats empty variables as unset", () => {
    const config = loadConfig(WorkerConfig, { ...required, EXPERTMESH_PORT: "", EXPERTMESH_REDIS_URL: "" });
    assert.equal(config.port, 0);
    assert.equal(config.redisUrl, undefined);
  });

  it("rejects an unknown EXPERTMESH_ variable and suggests the near miss", () => {
    const err = configError(() => loadConfig(WorkerConfig, { ...required, EXPERTMESH_PROT: "1" }));
    assert.match(err.message, /EXPERTMESH_PROT: unknown variable \(did you mean EXPERTMESH_PORT\?\)/);
    assert.ok("EXPERTMESH_PROT" in err.details);
  });

  it("rejects invalid int, enum and duration values, naming variable, value and expectation", () => {
    for (const [name, value, expected] of [
      ["EXPERTMESH_PORT", "80a", /int in \[0, 65535\]/],
      ["EXPERTMESH_PORT", "70000", /int in \[0, 65535\]/],
      ["EXPERTMESH_PORT", "1.5", /int/],
      ["EXPERTMESH_LOG_LEVEL", "loud", /one of debug \| info \| warn \| error/],
      ["EXPERTMESH_DRAIN_TIMEOUT", "30", /duration like 250ms, 30s, 5m in \[0, 10m\]/],
      ["EXPERTMESH_DRAIN_TIMEOUT", "11m", /duration/],
      ["EXPERTMESH_BIAS_GAMMA", "-1", /number >= 0/],
      ["EXPERTMESH_USE_CUDA", "maybe", /bool/],
    ] as const) {
      const err = configError(() => loadConfig(WorkerConfig, { ...required, [name]: value }));
      assert.ok(err.message.includes(`${name}="${value}": expected`), err.message);
      assert.match(err.message, expected);
    }
  });

  it("reports every problem in one error", () => {
    const err = configError(() =>
      loadConfig(WorkerConfig, {
        EXPERTMESH_PORT: "-1",
        EXPERTMESH_LOG_LEVEL: "verbose",
        EXPERTMESH_DRAIN_TIMEOUT: "soon",
        EXPERTMESH_EXTRA: "x",
      }),
    );
    assert.match(err.message, /^invalid configuration \(5 problems\):/);
    for (const name of [
      "EXPERTMESH_PORT",
      "EXPERTMESH_LOG_LEVEL",
      "EXPERTMESH_DRAIN_TIMEOUT",
      "EXPERTMESH_EXTRA",
      "EXPERTMESH_NODE",
    ]) {
      assert.ok(name in err.details, `${name} missing from ${err.message}`);
    }
    assert.match(err.message, /EXPERTMESH_NODE: required, not set/);
    assert.equal(err.message.split("\n").length, 6);
  });

  it("masks secret values in errors", () => {
    const secretConfig = defineConfig({
      token: stringOption({ env: "EXPERTMESH_TOKEN", secret: true, doc: "token" }),
      limit: intOption({ env: "EXPERTMESH_LIMIT", default: 1, doc: "" }),
    });
    const err = configError(() =>
      loadConfig(secretConfig, { EXPERTMESH_TOKEN: "hunter2", EXPERTMESH_LIMIT: "x" }),
    );
    assert.doesNotMatch(err.message, /hunter2/);
    assert.throws(
      () =>
        loadConfig(defineConfig({ n: intOption({ env: "EXPERTMESH_N", optional: true, doc: "" }) }), {
          EXPERTMESH_N: "oops",
        }),
      /EXPERTMESH_N="oops"/,
    );
  });

  it("applies overrides over the environment, typed or as text", () => {
    const config = loadConfig(
      WorkerConfig,
      { ...required, EXPERTMESH_PORT: "1000", EXPERTMESH_LOG_LEVEL: "warn" },
      { port: 2000, logLevel: undefined, drainTimeoutMs: "250ms", useCuda: true, peers: ["x"], gamma: "0.5" },
    );
    assert.equal(config.port, 2000);
    assert.equal(config.logLevel, "warn"); // undefined override leaves the env value
    assert.equal(config.drainTimeoutMs, 250);
    assert.equal(config.useCuda, true);
    assert.deepEqual(config.peers, ["x"]);
    assert.equal(config.gamma, 0.5);
    // An override satisfies a required option.
    assert.equal(loadConfig(WorkerConfig, {}, { node: "n9" }).node, "n9");
  });

  it("validates overrides like the environment", () => {
    const err = configError(() =>
      loadConfig(WorkerConfig, required, { port: 1.5, logLevel: "shout", drainTimeoutMs: -5 }),
    );
    assert.match(err.message, /override 'port'=1\.5: expected int in \[0, 65535\]/);
    assert.match(err.message, /override 'logLevel'="shout": expected one of/);
    assert.match(err.message, /override 'drainTimeoutMs'=-5: expected duration/);
    const unknown = configError(() => loadConfig(WorkerConfig, required, { nope: 1 } as never));
    assert.match(unknown.message, /override 'nope': unknown option/);
  });

  it("infers the config type from the registry", () => {
    const config: ConfigValues<typeof WorkerConfig> = loadConfig(WorkerConfig, required);
    const port: number = config.port;
    const level: "debug" | "info" | "warn" | "error" = config.logLevel;
    const url: string | undefined = config.redisUrl;
    const peers: readonly string[] = config.peers;
    assert.equal(typeof port, "number");
    assert.equal(level, "info");
    assert.equal(url, undefined);
    assert.deepEqual(peers, []);
    // @ts-expect-error — an optional option may be undefined
    const rows: number = config.maxRows;
    assert.equal(rows, undefined);
    // @ts-expect-error — the enum's type is its values, not string
    const wrong: "trace" = config.logLevel;
    assert.equal(wrong, "info");
    assert.throws(() => {
      // @ts-expect-error — the loaded config is read-only
      config.port = 1;
    }, TypeError);
  });

  it("rejects bad definitions when defined", () => {
    assert.throws(() => intOption({ env: "PORT", default: 1, doc: "" }), /must match/);
    assert.throws(
      () => intOption({ env: "EXPERTMESH_X", default: 99, max: 10, doc: "" }),
      /default is invalid/,
    );
    assert.throws(
      () =>
        defineConfig({
          a: intOption({ env: "EXPERTMESH_A", default: 1, doc: "" }),
          b: boolOption({ env: "EXPERTMESH_A", default: true, doc: "" }),
        }),
      /both use EXPERTMESH_A/,
    );
    // @ts-expect-error — optional and default exclude each other
    assert.throws(() => intOption({ env: "EXPERTMESH_X", optional: true, default: 1, doc: "" }), /exclude/);
    assert.throws(
      // @ts-expect-error — the default must be one of the values
      () => enumOption({ env: "EXPERTMESH_Y", values: ["a", "b"], default: "c", doc: "" }),
      /default is invalid, expected one of a \| b/,
    );
  });
});

describe("durations", () => {
  it("parses units and compounds, and rejects unitless or malformed text", () => {
    assert.equal(parseDuration("250ms"), 250);
    assert.equal(parseDuration("30s"), 30_000);
    assert.equal(parseDuration("5m"), 300_000);
    assert.equal(parseDuration("1h30m"), 5_400_000);
    assert.equal(parseDuration("1.5s"), 1_500);
    assert.equal(parseDuration("0"), 0);
    for (const bad of ["30", "", "s", "5 m", "5x", "-1s", "1s2"])
      assert.equal(parseDuration(bad), undefined, bad);
  });

  it("formats milliseconds back to the shortest spelling", () => {
    assert.equal(formatDuration(90_000), "1m30s");
    assert.equal(formatDuration(250), "250ms");
    assert.equal(formatDuration(0), "0");
    assert.equal(parseDuration(formatDuration(3_723_004)), 3_723_004);
  });
});

describe("describeConfig", () => {
  it("renders one markdown row per option with env var, default and doc", () => {
    const table = describeConfig(WorkerConfig);
    const lines = table.trimEnd().split("\n");
    assert.equal(lines[0], "| Option | Env var | Type | Default | Description |");
    assert.equal(lines.length, 2 + Object.keys(WorkerConfig).length);
    assert.ok(
      lines.includes(
        "| `port` | `EXPERTMESH_PORT` | int in [0, 65535] | `0` | gRPC port (0 picks a free one) |",
      ),
    );
    assert.match(
      table,
      /\| `drainTimeoutMs` \| `EXPERTMESH_DRAIN_TIMEOUT` \| .* \| `30s` \| drain deadline \|/,
    );
    assert.match(table, /\| `node` \| `EXPERTMESH_NODE` \| string \| \*required\* \|/);
    assert.match(table, /\| `redisUrl` .* \| \*unset\* \|/);
    assert.match(table, /\| `peers` .* \| \*empty\* \| peer addresses \\\| host:port \|/);
  });
});
