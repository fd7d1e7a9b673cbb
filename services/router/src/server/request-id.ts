import { randomUUID } from "node:crypto";

/** A request id for requests that bring none: `<kind>-<uuid without dashes>` (OpenAI's `cmpl-…` shape). */
export function newRequestId(kind: string): string {
  return `${kind}-${randomUUID().replaceAll("-", "")}`;
}
