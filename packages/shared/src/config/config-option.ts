/**
 * Typed configuration options, one factory per kind. Each option knows its environment variable,
 * how to parse it, its default and its doc line; `defineConfig` collects them into a registry and
 * `loadConfig` turns the registry into a typed, defaulted, frozen object (see load-config.ts).
 *
 * An option is one of:
 * - with a `default` → always has a value (type T);
 * - `optional: true` → may be unset (type T | undefined);
 * - neither → required: leaving it unset is a startup error.
 */
import { formatDuration, parseDuration } from "./duration.ts";

export type OptionKind = "int" | "number" | "bool" | "string" | "enum" | "duration" | "list";

export type Parsed<T> = { ok: true; value: T } | { ok: false; expected: string };

export interface ConfigOption<T> {
  readonly kind: OptionKind;
  /** Full environment variable name, `EXPERTMESH_…`. */
  readonly env: string;
  readonly doc: string;
  /** May be left unset; its value is then undefined. */
  readonly optional: boolean;
  /** Unset and no default is a startup error. */
  readonly required: boolean;
  /** The parsed default (milliseconds for durations); undefined when there is none. */
  readonly default: T | undefined;
  /** The default as docs show it ("30s", "info"); undefined when there is none. */
  readonly defaultText: string | undefined;
  /** What a valid value looks like, e.g. "int in [0, 65535]". */
  readonly type: string;
  /** Values are masked in error messages and docs (URLs with passwords, tokens). */
  readonly secret: boolean;
  /** Parses an environment variable's text. */
  parse(raw: string): Parsed<T>;
  /** Validates an override: the typed value itself, or text parsed like the environment's. */
  accept(value: unknown): Parsed<T>;
}

export interface OptionInit {
  /** Environment variable, `EXPERTMESH_` + upper snake case. */
  env: string;
  /** One line for `describeConfig`'s table. */
  doc: string;
}

interface RangeInit {
  min?: number;
  max?: number;
}

export type IntOptionInit = OptionInit & RangeInit;
export type NumberOptionInit = OptionInit & RangeInit;
export type BoolOptionInit = OptionInit;
export interface StringOptionInit extends OptionInit {
  secret?: boolean;
}
export interface EnumOptionInit<V extends string> extends OptionInit {
  values: readonly V[];
}
export interface DurationOptionInit extends OptionInit {
  /** Bounds as durations ("10ms") or milliseconds. */
  min?: string | number;
  max?: string | number;
}
export interface ListOptionInit extends OptionInit {
  /** Item separator in the environment variable; "," by default. Items are trimmed, empties dropped. */
  separator?: string;
}

type Optional = { optional: true };
type Defaulted<D> = { optional?: false; default?: D };

const ENV_NAME = /^EXPERTMESH_[A-Z][A-Z0-9_]*$/;

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const bad = (expected: string): Parsed<never> => ({ ok: false, expected });

interface KindSpec<T> {
  kind: OptionKind;
  type: string;
  parse: (raw: string) => Parsed<T>;
  /** Validates a typed (non-string) override value. */
  check: (value: unknown) => Parsed<T>;
  format: (value: T) => string;
}

interface AnyInit extends OptionInit {
  optional?: boolean;
  default?: unknown;
  secret?: boolean;
}

function makeOption<T>(init: AnyInit, spec: KindSpec<T>): ConfigOption<T> {
  if (!ENV_NAME.test(init.env)) {
    throw new TypeError(`config option env '${init.env}' must match ${String(ENV_NAME)}`);
  }
  const optional = init.optional === true;
  if (optional && init.default !== undefined) {
    throw new TypeError(`config option ${init.env}: 'optional' and 'default' exclude each other`);
  }
  const accept = (value: unknown): Parsed<T> =>
    typeof value === "string" ? spec.parse(value) : spec.check(value);
  let def: T | undefined;
  let defaultText: string | undefined;
  if (init.default !== undefined) {
    const parsed = accept(init.default);
    if (!parsed.ok)
      throw new TypeError(`config option ${init.env}: default is invalid, expected ${parsed.expected}`);
    def = parsed.value;
    defaultText = typeof init.default === "string" ? init.default : spec.format(parsed.value);
  }
  return Object.freeze({
    kind: spec.kind,
    env: init.env,
    doc: init.doc,
    optional,
    required: !optional && def === undefined,
    default: def,
    defaultText,
    type: spec.type,
    secret: init.secret === true,
    parse: spec.parse,
    accept,
  });
}

function rangeText(
  min: number | undefined,
  max: number | undefined,
  fmt: (n: number) => string = String,
): string {
  if (min !== undefined && max !== undefined) return ` in [${fmt(min)}, ${fmt(max)}]`;
  if (min !== undefined) return ` >= ${fmt(min)}`;
  if (max !== undefined) return ` <= ${fmt(max)}`;
  return "";
}

function inRange(n: number, min: number | undefined, max: number | undefined): boolean {
  return (min === undefined || n >= min) && (max === undefined || n <= max);
}

const INT_TEXT = /^[+-]?\d+$/;

/** A whole number (port, count, size). */
export function intOption(init: IntOptionInit & Optional): ConfigOption<number | undefined>;
export function intOption(init: IntOptionInit & Defaulted<number>): ConfigOption<number>;
export function intOption(init: IntOptionInit & AnyInit): ConfigOption<number | undefined> {
  const type = `int${rangeText(init.min, init.max)}`;
  const check = (v: unknown): Parsed<number> =>
    typeof v === "number" && Number.isSafeInteger(v) && inRange(v, init.min, init.max) ? ok(v) : bad(type);
  return makeOption<number>(init, {
    kind: "int",
    type,
    parse: (raw) => (INT_TEXT.test(raw.trim()) ? check(Number(raw)) : bad(type)),
    check,
    format: String,
  });
}

/** A finite real number (rate, factor). */
export function numberOption(init: NumberOptionInit & Optional): ConfigOption<number | undefined>;
export function numberOption(init: NumberOptionInit & Defaulted<number>): ConfigOption<number>;
export function numberOption(init: NumberOptionInit & AnyInit): ConfigOption<number | undefined> {
  const type = `number${rangeText(init.min, init.max)}`;
  const check = (v: unknown): Parsed<number> =>
    typeof v === "number" && Number.isFinite(v) && inRange(v, init.min, init.max) ? ok(v) : bad(type);
  return makeOption<number>(init, {
    kind: "number",
    type,
    parse: (raw) => (raw.trim() === "" ? bad(type) : check(Number(raw))),
    check,
    format: String,
  });
}

const BOOL_TEXT: Readonly<Record<string, boolean>> = {
  true: true,
  false: false,
  "1": true,
  "0": false,
  yes: true,
  no: false,
  on: true,
  off: false,
};

/** A switch: true/false, 1/0, yes/no, on/off (any case). */
export function boolOption(init: BoolOptionInit & Optional): ConfigOption<boolean | undefined>;
export function boolOption(init: BoolOptionInit & Defaulted<boolean>): ConfigOption<boolean>;
export function boolOption(init: BoolOptionInit & AnyInit): ConfigOption<boolean | undefined> {
  const type = "bool (true/false, 1/0, yes/no, on/off)";
  return makeOption<boolean>(init, {
    kind: "bool",
    type,
    parse: (raw) => {
      const v = BOOL_TEXT[raw.trim().toLowerCase()];
      return v === undefined ? bad(type) : ok(v);
    },
    check: (v) => (typeof v === "boolean" ? ok(v) : bad(type)),
    format: String,
  });
}

/** Free text (URL, path, label). */
export function stringOption(init: StringOptionInit & Optional): ConfigOption<string | undefined>;
export function stringOption(init: StringOptionInit & Defaulted<string>): ConfigOption<string>;
export function stringOption(init: StringOptionInit & AnyInit): ConfigOption<string | undefined> {
  return makeOption<string>(init, {
    kind: "string",
    type: "string",
    parse: ok,
    check: () => bad("string"),
    format: (v) => v,
  });
}

/** One of a fixed set of words; matched case-insensitively, returned as declared. */
export function enumOption<const V extends string>(
  init: EnumOptionInit<V> & Optional,
): ConfigOption<V | undefined>;
export function enumOption<const V extends string>(
  init: EnumOptionInit<V> & Defaulted<NoInfer<V>>,
): ConfigOption<V>;
export function enumOption<const V extends string>(
  init: EnumOptionInit<V> & AnyInit,
): ConfigOption<V | undefined> {
  if (init.values.length === 0)
    throw new TypeError(`config option ${init.env}: enum needs at least one value`);
  const type = `one of ${init.values.join(" | ")}`;
  const byLower = new Map(init.values.map((v) => [v.toLowerCase(), v]));
  const parse = (raw: string): Parsed<V> => {
    const v = byLower.get(raw.trim().toLowerCase());
    return v === undefined ? bad(type) : ok(v);
  };
  return makeOption(init, { kind: "enum", type, parse, check: () => bad(type), format: (v) => v });
}

/** A duration written "250ms", "30s", "5m", "1h30m" (or "0"); the value is in milliseconds. */
export function durationOption(init: DurationOptionInit & Optional): ConfigOption<number | undefined>;
export function durationOption(init: DurationOptionInit & Defaulted<string | number>): ConfigOption<number>;
export function durationOption(init: DurationOptionInit & AnyInit): ConfigOption<number | undefined> {
  const bound = (b: string | number | undefined): number | undefined => {
    if (b === undefined || typeof b === "number") return b;
    const ms = parseDuration(b);
    if (ms === undefined) throw new TypeError(`config option ${init.env}: bound '${b}' is not a duration`);
    return ms;
  };
  const min = bound(init.min);
  const max = bound(init.max);
  const type = `duration like 250ms, 30s, 5m${rangeText(min, max, formatDuration)}`;
  const check = (v: unknown): Parsed<number> =>
    typeof v === "number" && Number.isFinite(v) && v >= 0 && inRange(v, min, max) ? ok(v) : bad(type);
  return makeOption<number>(init, {
    kind: "duration",
    type,
    parse: (raw) => {
      const ms = parseDuration(raw);
      return ms === undefined ? bad(type) : check(ms);
    },
    check,
    format: formatDuration,
  });
}

/** A list of words, "a,b,c" in the environment; the value is a frozen array. */
export function listOption(init: ListOptionInit & Optional): ConfigOption<readonly string[] | undefined>;
export function listOption(
  init: ListOptionInit & Defaulted<readonly string[] | string>,
): ConfigOption<readonly string[]>;
export function listOption(init: ListOptionInit & AnyInit): ConfigOption<readonly string[] | undefined> {
  const sep = init.separator ?? ",";
  const type = `list separated by '${sep}'`;
  return makeOption<readonly string[]>(init, {
    kind: "list",
    type,
    parse: (raw) =>
      ok(
        Object.freeze(
          raw
            .split(sep)
            .map((s) => s.trim())
            .filter((s) => s.length > 0),
        ),
      ),
    check: (v) =>
      Array.isArray(v) && v.every((s) => typeof s === "string") ? ok(Object.freeze([...v])) : bad(type),
    format: (v) => v.join(sep),
  });
}
