/**
 * Regenerates the config-key table of docs/model-config.md from CONFIG_KEYS:
 *   node --import tsx packages/model/src/config/write-config-doc.ts
 * The text around the table is hand-written; only the part between the markers is replaced.
 */
import { readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { renderConfigKeyTable } from "./config-keys.ts";

export const CONFIG_DOC_PATH = fileURLToPath(new URL("../../../../docs/model-config.md", import.meta.url));
export const TABLE_START =
  "<!-- config-keys:start (generated from packages/model/src/config/config-keys.ts) -->";
export const TABLE_END = "<!-- config-keys:end -->";

/** `doc` with the region between the markers replaced by the current table. */
export function updateConfigDoc(doc: string): string {
  docTable(doc); // throws when the markers are missing
  const start = doc.indexOf(TABLE_START);
  const end = doc.indexOf(TABLE_END);
  return `${doc.slice(0, start + TABLE_START.length)}\n${renderConfigKeyTable()}\n${doc.slice(end)}`;
}

/** Table rows as trimmed cells (prettier pads columns; the content is what must match). */
export function tableCells(table: string): string[][] {
  return table
    .split("\n")
    .filter((line) => line.startsWith("|"))
    .map((line) =>
      line
        .split(/(?<!\\)\|/)
        .slice(1, -1)
        .map((cell) => cell.trim().replace(/^:?-{3,}:?$/, "---")),
    );
}

/** The table currently between the doc's markers. */
export function docTable(doc: string): string {
  const start = doc.indexOf(TABLE_START);
  const end = doc.indexOf(TABLE_END);
  if (start < 0 || end < start) throw new Error(`${CONFIG_DOC_PATH}: table markers missing`);
  return doc.slice(start + TABLE_START.length, end);
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const doc = await readFile(CONFIG_DOC_PATH, "utf8");
  await writeFile(CONFIG_DOC_PATH, updateConfigDoc(doc));
}
