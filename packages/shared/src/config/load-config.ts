/**
 * A service's configuration: one registry of typed options (`defineConfig`), compiled once at
 * startup from the environment plus overrides (`loadConfig`) into a frozen, fully-defaulted object.
 * Every problem — unknown EXPERTMESH_ variables, bad values, missing required options — is
 * collected and reported in one error, so a bad deployment is fixed in one round.
 * This is the only place in ExpertMesh that reads the environment.
 */
import { Code, ExpertMeshError } from "../errors.ts";
import type { ConfigOption } from "./config-option.ts";

export const ENV_PREFIX = "EXPERTMESH_";

/** Option name (camelCase, as the code reads it) → option. */
export type ConfigRegistry = Readonly<Record<string, ConfigOption<unknown>>>;

/** The loaded configuration's type, inferred from a registry. */
export type ConfigValues<R extends ConfigRegistry> = {
  readonly [K in keyof R]: R[K] extends ConfigOption<infer T> ? T : never;
};

/** Values that win over the environment (e.g. CLI flags): typed values, or text parsed like the env's. */
export type ConfigOverrides<R extends ConfigRegistry> = {
  readonly [K in keyof R]?: ConfigValues<R>[K] | string | undefined;
};

export type Env = Readonly<Record<string, string | undefined>>;

/** Checks a registry once, at definition: environment variable names must be unique. */
export function defineConfig<const R extends ConfigRegistry>(options: R): R {
  const seen = new Map<string, string>();
  for (const [name, option] of Object.entries(options)) {
    const other = seen.get(option.env);
    if (other !== undefined) {
      throw new TypeError(`config options '${other}' and '${name}' both use ${option.env}`);
    }
    seen.set(option.env, name);
  }
  return Object.freeze({ ...options });
}

const MAX_SHOWN = 80;

function show(value: unknown, secret: boolean): string {
  if (secret) return "<secret>";
  const quoted = typeof value === "string";
  const text = quoted ? value : (JSON.stringify(value) ?? typeof value);
  const cut = text.length > MAX_SHOWN ? `${text.slice(0, MAX_SHOWN)}…` : text;
  return quoted ? JSON.stringify(cut) : cut;
}

/**
 * Compiles a registry against `env` (process.env by default) and `overrides`. Empty variables
 * count as unset. Throws one INVALID_ARGUMENT ExpertMeshError listing every problem; its
 * `details` map each offending variable (or override) to what was expected.
 */
export function loadConfig<R extends ConfigRegistry>(
  registry: R,
  env: Env = process.env,
  overrides: ConfigOverrides<R> = {},
): ConfigValues<R> {
  const problems: { key: string; text: string }[] = [];
  const values: Record<string, unknown> = {};
  const known = new Set(Object.values(registry).map((o) => o.env));

  for (const name of Object.keys(env).sort()) {
    if (name.startsWith(ENV_PREFIX) && !known.has(name)) {
      const hint = closest(name, known);
      problems.push({
        key: name,
        text: `${name}: unknown variable${hint === undefined ? "" : ` (did you mean ${hint}?)`}`,
      });
    }
  }
  for (const name of Object.keys(overrides)) {
    if (!Object.hasOwn(registry, name))
      problems.push({ key: name, text: `override '${name}': unknown option` });
  }

  for (const [name, option] of Object.entries(registry)) {
    const override: unknown = (overrides as Record<string, unknown>)[name];
    const raw = env[option.env];
    if (override !== undefined && override !== "") {
      const parsed = option.accept(override);
      if (parsed.ok) values[name] = parsed.value;
      else
        problems.push({
          key: name,
          text: `override '${name}'=${show(override, option.secret)}: expected ${parsed.expected}`,
        });
    } else if (raw !== undefined && raw !== "") {
      const parsed = option.parse(raw);
      if (parsed.ok) values[name] = parsed.value;
      else
        problems.push({
          key: option.env,
          text: `${option.env}=${show(raw, option.secret)}: expected ${parsed.expected}`,
        });
    } else if (option.required) {
      problems.push({
        key: option.env,
        text: `${option.env}: required, not set (${option.type}; ${option.doc})`,
      });
    } else {
      values[name] = option.default;
    }
  }

  if (problems.length > 0) {
    const count = problems.length === 1 ? "1 problem" : `${problems.length} problems`;
    throw new ExpertMeshError(
      Code.INVALID_ARGUMENT,
      `invalid configuration (${count}):\n${problems.map((p) => `  - ${p.text}`).join("\n")}`,
      { details: Object.fromEntries(problems.map((p) => [p.key, p.text])) },
    );
  }
  return Object.freeze(values) as ConfigValues<R>;
}

/** The known name nearest to a misspelt one, when it is close enough to be a typo. */
function closest(name: string, known: ReadonlySet<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(name.length / 5)) + 1;
  for (const candidate of known) {
    const d = editDistance(name, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const sub = (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      cur.push(Math.min(sub, (prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}
