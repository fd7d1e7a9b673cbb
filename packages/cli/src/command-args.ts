/**
 * What every `expertmesh` command does with its input: strict node:util parsing of its flags
 * (no positionals, -h/--help added), a bad argv turned into an INVALID_ARGUMENT ExpertMeshError,
 * the help printed on request, integer flags checked with messages naming the flag, and JSON
 * files read with errors naming what they were.
 */
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import type { ParseArgsConfig } from "node:util";
import { Code, ExpertMeshError } from "@expertmesh/shared";

/** Builds a command's INVALID_ARGUMENT error; `cause` is node:util's error for a bad argv. */
export type ArgsError = (message: string, cause?: unknown) => ExpertMeshError;

/** Errors followed by the command's whole usage text (bench, generate, make-model). */
export function withUsage(usage: string): ArgsError {
  return (message) => new ExpertMeshError(Code.INVALID_ARGUMENT, `${message}\n\n${usage}`);
}

/** Errors that point at --help (inspect, inspect-cluster, up, down). */
export const seeHelp: ArgsError = (message, cause) =>
  new ExpertMeshError(Code.INVALID_ARGUMENT, `${message} (see --help)`, { cause });

type FlagOptions = NonNullable<ParseArgsConfig["options"]>;
const HELP_FLAG = { help: { type: "boolean", short: "h" } } as const;
type CommandArgsConfig<O extends FlagOptions> = {
  args: string[];
  options: O & typeof HELP_FLAG;
  strict: true;
  allowPositionals: false;
};
export type FlagValues<O extends FlagOptions> = ReturnType<typeof parseArgs<CommandArgsConfig<O>>>["values"];

/**
 * The command's flags (`options` plus -h/--help), or null once `help` is printed for -h/--help.
 * Unknown flags, positionals and missing flag values are `error`s.
 */
export function parseCommandArgs<O extends FlagOptions>(
  args: string[],
  options: O,
  help: string,
  error: ArgsError,
): FlagValues<O> | null {
  const config: CommandArgsConfig<O> = {
    args,
    options: { ...options, ...HELP_FLAG },
    strict: true,
    allowPositionals: false,
  };
  let values: FlagValues<O>;
  try {
    ({ values } = parseArgs(config));
  } catch (err) {
    throw error((err as Error).message, err);
  }
  if ((values as { help?: boolean }).help === true) {
    console.log(help);
    return null;
  }
  return values;
}

/**
 * A flag's integer of at least `min` (0 or 1) written as plain digits; `fallback` when the flag is
 * absent. The error says "--flag must be a positive integer" (min 1) or "a non-negative integer".
 */
export function intFlag(
  flag: string,
  text: string | undefined,
  fallback: number,
  min: 0 | 1,
  error: ArgsError,
): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || !Number.isSafeInteger(n)) {
    throw error(`--${flag} must be a ${min === 1 ? "positive" : "non-negative"} integer, got '${text}'`);
  }
  return n;
}

/** A JSON file's parsed content; INVALID_ARGUMENT naming `what` when it is unreadable or not JSON. */
export async function readJsonFile(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new ExpertMeshError(Code.INVALID_ARGUMENT, `cannot read ${what} ${path}`, { cause: err });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ExpertMeshError(Code.INVALID_ARGUMENT, `${what} ${path} is not valid JSON`, { cause: err });
  }
}
