/**
 * The Helm chart in deploy/k8s/expertmesh, checked without a cluster: its values and examples
 * pass values.schema.json (and bad values do not), every value is documented, templates read
 * only values that exist, and every EXPERTMESH_* variable a role's pods get is a setting of that
 * service (services reject unknown EXPERTMESH_* variables at startup) — so chart and code cannot
 * drift apart. With a helm binary on PATH (or $HELM) the chart is also linted and rendered.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { after, describe, it } from "node:test";
import { Ajv } from "ajv";
import type { ErrorObject } from "ajv";
import { isMap, isScalar, parseAllDocuments, parseDocument } from "yaml";
import type { YAMLMap } from "yaml";
import {
  CHART_DIR,
  EXAMPLES_DIR,
  coalesceValues,
  envNamesSet,
  exampleFiles,
  expandDefine,
  isRecord,
  parseDefines,
  pathsReadThrough,
  readJson,
  readText,
  readYamlMap,
  scanLogLevels,
  scanServiceConfig,
  templateSources,
  valueAt,
} from "./chart-sources.ts";
import type { Values } from "./chart-sources.ts";

const defaults = readYamlMap(join(CHART_DIR, "values.yaml"));
const schema = readJson(join(CHART_DIR, "values.schema.json"));
assert.ok(isRecord(schema));
const validate = new Ajv({ allErrors: true, strict: true }).compile(schema);

function schemaErrors(values: Values): ErrorObject[] {
  return validate(values) ? [] : [...(validate.errors ?? [])];
}

function describeErrors(errors: readonly ErrorObject[]): string {
  return errors.map((e) => `${e.instancePath || "/"} ${e.keyword}: ${e.message ?? ""}`).join("\n");
}

/** The roles whose pods the shared pod template renders: values key, env template, service. */
const ROLES = [
  { role: "router", valuesKey: "router", service: "router", workload: "router-deployment.yaml" },
  { role: "attention", valuesKey: "attention", service: "attention", workload: "attention-statefulset.yaml" },
  {
    role: "expert-worker",
    valuesKey: "workers",
    service: "expert-worker",
    workload: "expert-worker-statefulset.yaml",
  },
] as const;

describe("Chart.yaml", () => {
  const chart = readYamlMap(join(CHART_DIR, "Chart.yaml"));

  it("is a v2 application chart with name, SemVer version, appVersion and kubeVersion", () => {
    assert.equal(chart.apiVersion, "v2");
    assert.equal(chart.name, "expertmesh");
    assert.equal(chart.type, "application");
    assert.match(String(chart.version), /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/);
    assert.equal(typeof chart.appVersion, "string");
    assert.ok(String(chart.appVersion).length > 0);
    assert.equal(typeof chart.description, "string");
    // The chart derives ids from the apps.kubernetes.io/pod-index label (Kubernetes 1.28+).
    assert.match(String(chart.kubeVersion), /^>=\s*1\.(2[89]|[3-9]\d)/);
  });
});

describe("values.yaml and the examples pass values.schema.json", () => {
  it("values.yaml alone is valid", () => {
    const errors = schemaErrors(defaults);
    assert.deepEqual(errors, [], describeErrors(errors));
  });

  const files = exampleFiles();
  it("there are example values files per scenario", () => {
    assert.ok(files.length >= 4, `only ${files.length} examples in ${EXAMPLES_DIR}`);
  });

  for (const file of files) {
    it(`examples/${basename(file)} merged over values.yaml is valid`, () => {
      const errors = schemaErrors(coalesceValues(defaults, readYamlMap(file)));
      assert.deepEqual(errors, [], describeErrors(errors));
    });
  }

  it("the cpu-tiny example's placement names exactly the workers it runs", () => {
    const example = coalesceValues(defaults, readYamlMap(join(EXAMPLES_DIR, "cpu-tiny.yaml")));
    const placement = readJson(join(EXAMPLES_DIR, "tiny-placement.json"));
    assert.ok(isRecord(placement) && Array.isArray(placement.workers));
    assert.equal(placement.format, "expertmesh.placement/v1");
    const ids = placement.workers.map((w: unknown) => (isRecord(w) ? w.workerId : undefined));
    const replicas = Number(valueAt(example, ["workers", "replicas"]));
    const prefix = String(valueAt(example, ["workers", "idPrefix"]));
    assert.deepEqual([...ids].sort(), Array.from({ length: replicas }, (_, i) => `${prefix}${i}`).sort());
  });
});

describe("values.schema.json rejects bad values", () => {
  // [what, override merged over values.yaml, instancePath of the expected error, keyword]
  const cases: [string, Values, string, string][] = [
    ["negative router replicas", { router: { replicas: -1 } }, "/router/replicas", "minimum"],
    ["zero workers", { workers: { replicas: 0 } }, "/workers/replicas", "minimum"],
    ["zero attention ranks", { attention: { replicas: 0 } }, "/attention/replicas", "minimum"],
    ["fractional replicas", { attention: { replicas: 1.5 } }, "/attention/replicas", "type"],
    ["replicas as a string", { workers: { replicas: "4" } }, "/workers/replicas", "type"],
    ["unknown wire dtype", { attention: { wireDtype: "fp16" } }, "/attention/wireDtype", "enum"],
    ["fp8 combine", { attention: { combineDtype: "fp8" } }, "/attention/combineDtype", "enum"],
    [
      "unknown execution provider",
      { workers: { executionProvider: "rocm" } },
      "/workers/executionProvider",
      "enum",
    ],
    ["typo'd key under workers", { workers: { replica: 4 } }, "/workers", "additionalProperties"],
    ["typo'd key under attention", { attention: { kvCacheMB: 512 } }, "/attention", "additionalProperties"],
    ["typo'd key under router", { router: { apikey: { value: "x" } } }, "/router", "additionalProperties"],
    ["unknown top-level key", { worker: { replicas: 2 } }, "", "additionalProperties"],
    ["port above 65535", { router: { ports: { http: 70000 } } }, "/router/ports/http", "maximum"],
    ["port 0", { workers: { ports: { grpc: 0 } } }, "/workers/ports/grpc", "minimum"],
    [
      "duration without a unit",
      { attention: { dispatchTimeout: "30" } },
      "/attention/dispatchTimeout",
      "pattern",
    ],
    ["duration as a number", { workers: { loadWindow: 10 } }, "/workers/loadWindow", "type"],
    ["unknown log level", { logLevel: "verbose" }, "/logLevel", "enum"],
    ["unknown routing node source", { workers: { routingNode: "hostname" } }, "/workers/routingNode", "enum"],
    ["unknown model source", { model: { source: "hub" } }, "/model/source", "enum"],
    ["relative model mount path", { model: { mountPath: "models" } }, "/model/mountPath", "pattern"],
    ["unknown placement source", { placement: { source: "k8s" } }, "/placement/source", "enum"],
    ["unknown redis mode", { redis: { mode: "cluster" } }, "/redis/mode", "enum"],
    ["external redis without url or secret", { redis: { mode: "external" } }, "/redis/external", "anyOf"],
    [
      "external redis url of another scheme",
      { redis: { external: { url: "http://r:6379" } } },
      "/redis/external/url",
      "pattern",
    ],
    [
      "no redis but placement from redis",
      { redis: { mode: "none" }, placement: { source: "redis" } },
      "/placement/source",
      "const",
    ],
    ["zero GPUs", { workers: { gpu: { count: 0 } } }, "/workers/gpu/count", "minimum"],
    [
      "bad memory quantity",
      { workers: { resources: { limits: { memory: "4 GB" } } } },
      "/workers/resources/limits/memory",
      "anyOf",
    ],
    ["cluster name with a space", { clusterName: "my cluster" }, "/clusterName", "pattern"],
    ["worker id prefix with '='", { workers: { idPrefix: "w=" } }, "/workers/idPrefix", "pattern"],
    ["KV block size 0", { attention: { kvBlockSize: 0 } }, "/attention/kvBlockSize", "minimum"],
    [
      "negative drain timeout",
      { router: { drainTimeoutSeconds: -5 } },
      "/router/drainTimeoutSeconds",
      "minimum",
    ],
    [
      "extraEnv entry without a name",
      { router: { extraEnv: [{ value: "x" }] } },
      "/router/extraEnv/0",
      "required",
    ],
    ["empty command", { workers: { command: [] } }, "/workers/command", "minItems"],
    ["ports deleted with null", { attention: { ports: null } }, "/attention", "required"],
    ["service type typo", { router: { service: { type: "Loadbalancer" } } }, "/router/service/type", "enum"],
  ];

  for (const [what, override, path, keyword] of cases) {
    it(what, () => {
      const errors = schemaErrors(coalesceValues(defaults, override));
      assert.ok(
        errors.some((e) => e.instancePath === path && e.keyword === keyword),
        `expected a '${keyword}' error at '${path}', got:\n${describeErrors(errors) || "(valid)"}`,
      );
    });
  }
});

describe("values.schema.json enums are the services' enums", () => {
  const properties = (path: readonly string[]): unknown => {
    let node: unknown = schema;
    for (const key of path)
      node = isRecord(node) && isRecord(node.properties) ? node.properties[key] : undefined;
    if (isRecord(node) && typeof node.$ref === "string" && isRecord(schema.definitions)) {
      node = schema.definitions[node.$ref.replace("#/definitions/", "")];
    }
    return isRecord(node) ? node.enum : undefined;
  };
  const configEnum = (service: string, env: string): readonly string[] | undefined =>
    scanServiceConfig(service).find((o) => o.env === env)?.values;

  const cases: [string[], string, string][] = [
    [["attention", "wireDtype"], "attention", "EXPERTMESH_WIRE_DTYPE"],
    [["attention", "combineDtype"], "attention", "EXPERTMESH_COMBINE_DTYPE"],
    [["attention", "executionProvider"], "attention", "EXPERTMESH_EXECUTION_PROVIDER"],
    [["workers", "executionProvider"], "expert-worker", "EXPERTMESH_EXECUTION_PROVIDER"],
  ];
  for (const [path, service, env] of cases) {
    it(`${path.join(".")} ↔ ${env} of ${service}`, () => {
      const words = configEnum(service, env);
      assert.ok(
        words !== undefined && words.length > 0,
        `${env} is an enum in services/${service}/src/config.ts`,
      );
      assert.deepEqual(properties(path), words);
    });
  }
  it("logLevel ↔ LOG_LEVELS", () => {
    assert.deepEqual(properties(["logLevel"]), scanLogLevels());
  });
});

describe("every value is documented with a `# --` comment", () => {
  const doc = parseDocument(readText(join(CHART_DIR, "values.yaml")));
  const DOC_LINE = /^\s*-- \S/m;

  /** Undocumented leaf values; a mapping without its own `# --` is a section whose keys need one. */
  function undocumented(map: YAMLMap, prefix: string): string[] {
    const out: string[] = [];
    map.items.forEach((pair, i) => {
      const key = isScalar(pair.key) ? String(pair.key.value) : "?";
      // The comment above a mapping's first key is attached to the mapping itself.
      const keyComment = isScalar(pair.key) ? (pair.key.commentBefore ?? "") : "";
      const comment = i === 0 ? `${map.commentBefore ?? ""}\n${keyComment}` : keyComment;
      if (DOC_LINE.test(comment)) return;
      if (isMap(pair.value) && pair.value.items.length > 0)
        out.push(...undocumented(pair.value, `${prefix}${key}.`));
      else out.push(`${prefix}${key}`);
    });
    return out;
  }

  /** Paths of the documented values (a documented mapping counts as one value). */
  function documented(map: YAMLMap, prefix: string): string[] {
    const out: string[] = [];
    map.items.forEach((pair, i) => {
      const key = isScalar(pair.key) ? String(pair.key.value) : "?";
      const keyComment = isScalar(pair.key) ? (pair.key.commentBefore ?? "") : "";
      const comment = i === 0 ? `${map.commentBefore ?? ""}\n${keyComment}` : keyComment;
      if (DOC_LINE.test(comment)) out.push(`${prefix}${key}`);
      else if (isMap(pair.value)) out.push(...documented(pair.value, `${prefix}${key}.`));
    });
    return out;
  }

  it("values.yaml", () => {
    assert.ok(isMap(doc.contents));
    assert.deepEqual(undocumented(doc.contents, ""), []);
  });

  it("deploy/k8s/README.md's values table lists every value", () => {
    assert.ok(isMap(doc.contents));
    const readme = readText(join(CHART_DIR, "../README.md"));
    const paths = documented(doc.contents, "");
    assert.ok(paths.length > 50);
    // A table row starts with the value's path in backticks (cells are padded by prettier).
    const rows = new Set([...readme.matchAll(/^\| `([^`]+)` +\|/gm)].map((m) => m[1]));
    assert.deepEqual(
      paths.filter((p) => !rows.has(p)),
      [],
    );
  });

  it("chart-owned schema objects require every key they declare (so schema and values.yaml list the same keys)", () => {
    // values.yaml passes the schema, so required keys exist in it and, with
    // additionalProperties false, it has no others; free-form Kubernetes objects declare no
    // required list and are left out.
    const loose: string[] = [];
    const walk = (node: unknown, at: string): void => {
      if (Array.isArray(node)) node.forEach((n, i) => walk(n, `${at}/${i}`));
      if (!isRecord(node)) return;
      if (node.additionalProperties === false && Array.isArray(node.required) && isRecord(node.properties)) {
        const required = new Set(node.required.map(String));
        for (const key of Object.keys(node.properties)) {
          if (key !== "global" && !required.has(key)) loose.push(`${at}/properties/${key}`);
        }
      }
      for (const [key, child] of Object.entries(node)) walk(child, `${at}/${key}`);
    };
    walk(schema, "#");
    assert.deepEqual(loose, []);
  });
});

describe("templates", () => {
  const sources = templateSources();
  const defines = new Map<string, string>();
  for (const text of sources.values()) for (const [name, body] of parseDefines(text)) defines.set(name, body);
  const allText = [...sources.values()].join("\n");

  it("have the helpers, NOTES.txt and one <role>-<kind>.yaml per object kind", () => {
    for (const name of [
      "_helpers.tpl",
      "NOTES.txt",
      "router-deployment.yaml",
      "router-service.yaml",
      "attention-statefulset.yaml",
      "attention-service.yaml",
      "expert-worker-statefulset.yaml",
      "expert-worker-service.yaml",
      "redis-statefulset.yaml",
      "redis-service.yaml",
    ]) {
      assert.ok(sources.has(name), `templates/${name} is missing`);
    }
    for (const name of sources.keys()) {
      assert.match(name, /^(_helpers\.tpl|NOTES\.txt|[a-z]+(-[a-z]+)*\.yaml)$/);
    }
  });

  it("every workload renders the one pod template with its role's env block", () => {
    for (const { role, valuesKey, workload } of ROLES) {
      const text = sources.get(workload) ?? "";
      assert.match(text, /include "expertmesh\.podTemplate"/, workload);
      assert.ok(
        text.includes(`include "expertmesh.env.${role}"`),
        `${workload} sets env from expertmesh.env.${role}`,
      );
      assert.ok(text.includes(`"values" .Values.${valuesKey}`), `${workload} passes .Values.${valuesKey}`);
    }
  });

  it("every .Values path they read exists in values.yaml", () => {
    const missing = pathsReadThrough(allText, ".Values")
      .filter((path) => valueAt(defaults, path) === undefined)
      .map((path) => path.join("."));
    assert.deepEqual(missing, []);
  });

  it("every role value the pod template reads exists under router, attention and workers", () => {
    const podTemplate = defines.get("expertmesh.podTemplate");
    assert.ok(podTemplate !== undefined);
    const paths = pathsReadThrough(podTemplate, "$rv");
    assert.ok(paths.length > 10, "the pod template reads its role's values through $rv");
    const missing: string[] = [];
    for (const { valuesKey } of ROLES) {
      for (const path of paths) {
        if (valueAt(defaults, [valuesKey, ...path]) === undefined)
          missing.push(`${valuesKey}.${path.join(".")}`);
      }
    }
    // Other template variables bound to a values subtree.
    for (const [variable, base] of [
      ["$redis", ["redis", "bundled"]],
      ["$init", ["model", "initContainer"]],
    ] as const) {
      for (const path of pathsReadThrough(allText, variable)) {
        if (valueAt(defaults, [...base, ...path]) === undefined)
          missing.push(`${base.join(".")}.${path.join(".")}`);
      }
    }
    assert.deepEqual(missing, []);
  });

  for (const { role, service } of ROLES) {
    it(`${role} pods get only EXPERTMESH_* settings of services/${service}/src/config.ts, and all required ones`, () => {
      const options = scanServiceConfig(service);
      assert.ok(
        options.length >= 8,
        `found only ${options.length} options in services/${service}/src/config.ts`,
      );
      const known = new Set(options.map((o) => o.env));
      const set = envNamesSet(expandDefine(defines, `expertmesh.env.${role}`));
      const unknown = [...set].filter((name) => !known.has(name));
      assert.deepEqual(unknown, [], `the ${service} service would refuse to start on these`);
      const unset = options.filter((o) => o.required && !set.has(o.env)).map((o) => o.env);
      assert.deepEqual(unset, [], `the ${service} service requires these`);
    });
  }

  it("set EXPERTMESH_* variables only inside the expertmesh.env.* blocks", () => {
    let outside = allText;
    for (const [name, body] of defines)
      if (name.startsWith("expertmesh.env.")) outside = outside.replace(body, "");
    assert.deepEqual([...envNamesSet(outside)], []);
  });

  it("turn off service links, which would inject EXPERTMESH_*-prefixed variables", () => {
    // A Service named <release>-expertmesh-… makes the kubelet inject EXPERTMESH_…_PORT etc.
    assert.match(defines.get("expertmesh.podTemplate") ?? "", /^\s*enableServiceLinks: false$/m);
    assert.match(sources.get("redis-statefulset.yaml") ?? "", /^\s*enableServiceLinks: false$/m);
  });

  it("probe the services' gRPC health on the gRPC port", () => {
    const podTemplate = defines.get("expertmesh.podTemplate") ?? "";
    for (const probe of ["startupProbe", "readinessProbe"]) {
      assert.match(
        podTemplate,
        new RegExp(`${probe}:\\s*\\n\\s*grpc:\\s*\\n\\s*port: \\{\\{ \\$rv\\.ports\\.grpc \\}\\}`),
      );
    }
  });
});

// ---- With a helm binary: lint and render the chart, and check the rendered pods. ----

const HELM = process.env.HELM ?? "helm";
const helmFound = spawnSync(HELM, ["version", "--short"], { encoding: "utf8" }).status === 0;

function helm(args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(HELM, [...args], { cwd: CHART_DIR, encoding: "utf8", maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Flags that make an example installable: a placement where it reads one from values. */
function exampleArgs(file: string): string[] {
  const merged = coalesceValues(defaults, readYamlMap(file));
  const fromValues =
    valueAt(merged, ["placement", "source"]) === "file" &&
    valueAt(merged, ["placement", "existingConfigMap"]) === "";
  return fromValues
    ? ["-f", file, "--set-file", `placement.json=${join(EXAMPLES_DIR, "tiny-placement.json")}`]
    : ["-f", file];
}

interface Container {
  name: string;
  env?: { name: string; value?: string }[];
  resources?: { limits?: Record<string, unknown> };
}

describe(
  "helm lint and helm template",
  { skip: helmFound ? false : `no helm binary (${HELM}) on PATH` },
  () => {
    const scratch = mkdtempSync(join(tmpdir(), "expertmesh-chart-"));
    after(() => rmSync(scratch, { recursive: true, force: true }));
    const options = new Map(ROLES.map((r) => [r.role, scanServiceConfig(r.service)]));

    for (const file of exampleFiles()) {
      it(`examples/${basename(file)} lints and renders pods whose env the services accept`, () => {
        const lint = helm(["lint", "--strict", ".", ...exampleArgs(file)]);
        assert.equal(lint.status, 0, lint.stdout + lint.stderr);
        const rendered = helm(["template", "em", ".", ...exampleArgs(file)]);
        assert.equal(rendered.status, 0, rendered.stderr);
        const values = coalesceValues(defaults, readYamlMap(file));
        const docs = parseAllDocuments(rendered.stdout).map((d) => d.toJS() as unknown);
        const pods = new Map<string, { enableServiceLinks?: boolean; containers: Container[] }>();
        for (const d of docs) {
          if (!isRecord(d) || (d.kind !== "Deployment" && d.kind !== "StatefulSet")) continue;
          const spec = valueAt(d, ["spec", "template", "spec"]);
          const role = valueAt(d, ["metadata", "labels", "app.kubernetes.io/component"]);
          assert.ok(isRecord(spec) && typeof role === "string");
          pods.set(role, spec as unknown as { enableServiceLinks?: boolean; containers: Container[] });
        }
        for (const { role, valuesKey } of ROLES) {
          const pod = pods.get(role);
          assert.ok(pod !== undefined, `${role} workload rendered`);
          assert.equal(pod.enableServiceLinks, false);
          const container = pod.containers.find((c) => c.name === role);
          assert.ok(container !== undefined);
          const env = new Map((container.env ?? []).map((e) => [e.name, e.value]));
          const known = options.get(role) ?? [];
          const names = [...env.keys()].filter((n) => n.startsWith("EXPERTMESH_"));
          assert.deepEqual(
            names.filter((n) => !known.some((o) => o.env === n)),
            [],
            `${role}: unknown settings`,
          );
          assert.deepEqual(
            known.filter((o) => o.required && !env.has(o.env)).map((o) => o.env),
            [],
            `${role}: required settings`,
          );
          const cuda = valueAt(values, [valuesKey, "executionProvider"]) === "cuda";
          const gpuName = String(valueAt(values, [valuesKey, "gpu", "resourceName"]));
          assert.equal(
            container.resources?.limits?.[gpuName] !== undefined,
            cuda,
            `${role}: GPU limit iff cuda`,
          );
        }
        const addresses = (role: string, name: string): string[] =>
          (pods.get(role)?.containers[0]?.env ?? []).find((e) => e.name === name)?.value?.split(",") ?? [];
        assert.equal(
          addresses("attention", "EXPERTMESH_WORKER_ADDRESSES").length,
          valueAt(values, ["workers", "replicas"]),
        );
        assert.equal(
          addresses("router", "EXPERTMESH_ATTENTION_ADDRESSES").length,
          valueAt(values, ["attention", "replicas"]),
        );
      });
    }

    it("refuses bad values at install time (schema) and a placement that does not match the workers", () => {
      const bad = join(scratch, "bad.yaml");
      writeFileSync(bad, JSON.stringify({ workers: { replicas: 0 }, attention: { wireDtype: "fp16" } }));
      const schemaRun = helm(["template", "em", ".", "-f", join(EXAMPLES_DIR, "cpu-tiny.yaml"), "-f", bad]);
      assert.notEqual(schemaRun.status, 0);
      assert.match(schemaRun.stderr, /schema/);
      const mismatch = helm([
        "template",
        "em",
        ".",
        ...exampleArgs(join(EXAMPLES_DIR, "cpu-tiny.yaml")),
        "--set",
        "workers.replicas=3",
      ]);
      assert.notEqual(mismatch.status, 0);
      assert.match(mismatch.stderr, /placement\.json lists 4 workers but workers\.replicas is 3/);
    });
  },
);
