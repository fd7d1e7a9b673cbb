/**
 * Structured logs: pino JSON lines on stdout, one logger per process with `service` bound,
 * ISO-8601 `time` and the level as a word. Components take a child logger
 * (`logger.child({ component: "scheduler" })`) rather than creating their own.
 * Tests pass `destination` (see `captureLogs` in @expertmesh/shared/testing) to read the lines back.
 */
import { hostname } from "node:os";
import { pino } from "pino";
import type { DestinationStream, Logger } from "pino";

export type { Logger } from "pino";

/** Levels as config (`enumOption({ values: LOG_LEVELS, … })`) and pino spell them. */
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LoggerOptions {
  /** Service name, bound to every line ("router", "attention", "expert-worker"). */
  service: string;
  level?: LogLevel;
  /** Where lines go; stdout by default. */
  destination?: DestinationStream;
  /** Extra fields bound to every line (e.g. `{ node: "n0", rank: 3 }`). */
  bindings?: Readonly<Record<string, unknown>>;
}

export function createLogger(options: LoggerOptions): Logger {
  const config = {
    level: options.level ?? "info",
    base: { service: options.service, pid: process.pid, hostname: hostname(), ...options.bindings },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  return options.destination === undefined ? pino(config) : pino(config, options.destination);
}
