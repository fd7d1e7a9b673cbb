/**
 * Static readers for the Helm chart tests: the chart's files, Helm's value merge, a scan of the
 * Go-template sources (named templates, `.Values` paths, env names) and a scan of the services'
 * config registries (`services/<name>/src/config.ts`). No helm binary needed.
 */
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const CHART_DIR = join(REPO_ROOT, "deploy/k8s/expertmesh");
export const TEMPLATES_DIR = join(CHART_DIR, "templates");
export const EXAMPLES_DIR = join(CHART_DIR, "examples");

export type Values = Record<string, unknown>;

export function isRecord(v: unknown): v is Values {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function readText(path: string): string {
  return readFileSync(path, "utf8");
}

/** A YAML file that must hold a mapping. */
export function readYamlMap(path: string): Values {
  const doc: unknown = parse(readText(path));
  if (!isRecord(doc)) throw new Error(`${path}: expected a YAML mapping`);
  return doc;
}

export function readJson(path: string): unknown {
  return JSON.parse(readText(path)) as unknown;
}

/** Example values files (`examples/*.yaml`), sorted. */
export function exampleFiles(): string[] {
  return readdirSync(EXAMPLES_DIR)
    .filter((f) => f.endsWith(".yaml"))
    .sort()
    .map((f) => join(EXAMPLES_DIR, f));
}

/**
 * Helm's merge of user values over the chart's defaults: mappings merge key by key, anything
 * else replaces, and a null deletes the key. Helm validates the schema against this result.
 */
export function coalesceValues(defaults: Values, overrides: Values): Values {
  const out: Values = { ...defaults };
  for (const [key, value] of Object.entries(overrides)) {
    const base = out[key];
    if (value === null) delete out[key];
    else if (isRecord(value) && isRecord(base)) out[key] = coalesceValues(base, value);
    else out[key] = value;
  }
  return out;
}

/** The value at a dotted path, or `undefined` when a segment is missing. */
export function valueAt(values: unknown, path: readonly string[]): unknown {
  let node = values;
  for (const segment of path) {
    if (!isRecord(node) || !Object.hasOwn(node, segment)) return undefined;
    node = node[segment];
  }
  return node;
}

/** Every template source of the chart (`*.yaml`, `_helpers.tpl`, `NOTES.txt`): file name → text. */
export function templateSources(): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of readdirSync(TEMPLATES_DIR).sort()) out.set(name, readText(join(TEMPLATES_DIR, name)));
  return out;
}

const ACTION = /\{\{-?\s*([\s\S]*?)\s*-?\}\}/g;
const OPENS_BLOCK = /^(if|range|with|block|define)\b/;

/**
 * Named templates (`{{ define "name" }} … {{ end }}`) → their bodies, found by matching each
 * define with its `end` across nested if/range/with blocks.
 */
export function parseDefines(source: string): Map<string, string> {
  const out = new Map<string, string>();
  const stack: { kind: string; name?: string; bodyStart: number }[] = [];
  for (const m of source.matchAll(ACTION)) {
    const action = (m[1] ?? "").trim();
    if (action.startsWith("/*")) continue;
    const start = m.index;
    const end = start + m[0].length;
    const opened = OPENS_BLOCK.exec(action);
    if (opened !== null) {
      const kind = opened[1] ?? "";
      const name = kind === "define" ? /^define\s+"([^"]+)"/.exec(action)?.[1] : undefined;
      stack.push({ kind, name, bodyStart: end });
    } else if (action === "end") {
      const block = stack.pop();
      if (block === undefined) throw new Error(`unbalanced {{ end }} at offset ${start}`);
      if (block.kind === "define" && block.name !== undefined)
        out.set(block.name, source.slice(block.bodyStart, start));
    }
  }
  if (stack.length > 0) throw new Error(`unclosed {{ ${stack[stack.length - 1]?.kind} }} block`);
  return out;
}

/** Names of the templates a body includes (`include "x"` / `template "x"`). */
export function includedTemplates(body: string): string[] {
  return [...body.matchAll(/\b(?:include|template)\s+"([^"]+)"/g)].map((m) => m[1] ?? "");
}

/** A define's body plus the bodies of every template it includes, transitively. */
export function expandDefine(defines: ReadonlyMap<string, string>, name: string): string {
  const seen = new Set<string>();
  const parts: string[] = [];
  const visit = (n: string): void => {
    if (seen.has(n)) return;
    seen.add(n);
    const body = defines.get(n);
    if (body === undefined) throw new Error(`template "${n}" is included but never defined`);
    parts.push(body);
    for (const inner of includedTemplates(body)) visit(inner);
  };
  visit(name);
  return parts.join("\n");
}

/** EXPERTMESH_* environment variables a template text sets (`- name: EXPERTMESH_…`). */
export function envNamesSet(text: string): Set<string> {
  return new Set([...text.matchAll(/\bname:\s*"?(EXPERTMESH_[A-Z0-9_]+)/g)].map((m) => m[1] ?? ""));
}

/** Dotted paths read through a template variable or `.Values`, e.g. `$rv.ports.grpc` → ["ports", "grpc"]. */
export function pathsReadThrough(text: string, root: string): string[][] {
  const escaped = root.replace(/[$.]/g, (c) => `\\${c}`);
  const re = new RegExp(`${escaped}((?:\\.[A-Za-z_][A-Za-z0-9_]*)+)`, "g");
  const out = new Map<string, string[]>();
  for (const m of text.matchAll(re)) {
    const path = (m[1] ?? "").slice(1);
    out.set(path, path.split("."));
  }
  return [...out.values()];
}

export interface ConfigOptionScan {
  readonly env: string;
  /** No default and not optional: the service refuses to start without it. */
  readonly required: boolean;
  /** An enum option's words, when they are written out as a literal list. */
  readonly values: readonly string[] | undefined;
}

/**
 * The options of one service's config registry, read from the source of
 * `services/<service>/src/config.ts` (each `xxxOption({ env: "EXPERTMESH_…", … })` call).
 */
export function scanServiceConfig(service: string): ConfigOptionScan[] {
  let source = readText(join(REPO_ROOT, "services", service, "src/config.ts"));
  // Option blocks the registry spreads in from packages/shared/src/config/service-options.ts.
  const shared = readText(join(REPO_ROOT, "packages/shared/src/config/service-options.ts"));
  for (const m of source.matchAll(/\.\.\.(service[A-Za-z]*Options)\(/g)) {
    const start = shared.indexOf(`export function ${m[1] ?? ""}(`);
    if (start < 0)
      throw new Error(`${m[1] ?? ""} not found in packages/shared/src/config/service-options.ts`);
    const end = shared.indexOf("\nexport ", start + 1);
    source += shared.slice(start, end < 0 ? undefined : end);
  }
  const out: ConfigOptionScan[] = [];
  for (const m of source.matchAll(/\b[a-z]+Option\(\{([\s\S]*?)\}\)/g)) {
    const body = m[1] ?? "";
    const env = /\benv:\s*"(EXPERTMESH_[A-Z0-9_]+)"/.exec(body)?.[1];
    if (env === undefined) continue;
    const optional = /\boptional:\s*true\b/.test(body);
    const defaulted = /\bdefault:/.test(body);
    const list = /\bvalues:\s*\[([^\]]*)\]/.exec(body)?.[1];
    const values = list === undefined ? undefined : [...list.matchAll(/"([^"]*)"/g)].map((v) => v[1] ?? "");
    out.push({ env, required: !optional && !defaulted, values });
  }
  return out;
}

/** LOG_LEVELS as packages/shared/src/logging.ts spells them. */
export function scanLogLevels(): string[] {
  const source = readText(join(REPO_ROOT, "packages/shared/src/logging.ts"));
  const list = /\bLOG_LEVELS\s*=\s*\[([^\]]*)\]/.exec(source)?.[1];
  if (list === undefined) throw new Error("LOG_LEVELS not found in packages/shared/src/logging.ts");
  return [...list.matchAll(/"([^"]*)"/g)].map((v) => v[1] ?? "");
}
