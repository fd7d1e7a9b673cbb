/**
 * Captures a logger's JSON lines in memory: pass `capture.destination` to `createLogger` and
 * assert on the parsed records.
 */
import type { DestinationStream } from "pino";

export interface LogRecord {
  level: string;
  time: string;
  service: string;
  msg?: string;
  [field: string]: unknown;
}

export interface LogCapture {
  readonly destination: DestinationStream;
  /** Every line written so far, parsed. */
  readonly records: readonly LogRecord[];
  /** The raw lines as written. */
  readonly lines: readonly string[];
  /** Records whose `msg` equals (string) or matches (RegExp) `msg`. */
  find(msg: string | RegExp): LogRecord[];
}

export function captureLogs(): LogCapture {
  const lines: string[] = [];
  const records: LogRecord[] = [];
  const find = (msg: string | RegExp): LogRecord[] =>
    records.filter(
      (r) => typeof r.msg === "string" && (typeof msg === "string" ? r.msg === msg : msg.test(r.msg)),
    );
  return {
    destination: {
      write(chunk: string) {
        for (const line of chunk.split("\n")) {
          if (line === "") continue;
          lines.push(line);
          records.push(JSON.parse(line) as LogRecord);
        }
      },
    },
    records,
    lines,
    find,
  };
}
