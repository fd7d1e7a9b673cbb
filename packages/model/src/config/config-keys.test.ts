import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { CONFIG_KEYS, renderConfigKeyTable } from "./config-keys.ts";
import { CONFIG_DOC_PATH, docTable, tableCells, updateConfigDoc } from "./write-config-doc.ts";

const doc = readFileSync(CONFIG_DOC_PATH, "utf8");

test("docs/model-config.md holds the current table (regenerate with write-config-doc.ts)", () => {
  // Cell by cell: prettier may pad the columns.
  assert.deepEqual(tableCells(docTable(doc)), tableCells(renderConfigKeyTable()));
  assert.deepEqual(tableCells(docTable(updateConfigDoc(doc))), tableCells(renderConfigKeyTable()));
  assert.equal(tableCells(renderConfigKeyTable()).length, CONFIG_KEYS.length + 2);
  assert.ok(tableCells(renderConfigKeyTable()).every((row) => row.length === 6));
});

test("every key of the table appears in the doc", () => {
  const firstCells = new Set(tableCells(docTable(doc)).map((row) => row[0]));
  for (const { key } of CONFIG_KEYS) assert.ok(firstCells.has(`\`${key}\``), key);
});

test("every key of the real fixtures' configs is in the table", () => {
  for (const path of [
    "/work/shared/fixtures/tiny-v3/config.json",
    "/work/shared/fixtures/tiny-v3-fp8/config.json",
    "/work/shared/bench/perf-v3.config.json",
  ]) {
    const raw = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
    for (const key of Object.keys(raw))
      assert.ok(
        CONFIG_KEYS.some((k) => k.key === key),
        `${path}: ${key}`,
      );
  }
  assert.equal(new Set(CONFIG_KEYS.map((k) => k.key)).size, CONFIG_KEYS.length, "no duplicate keys");
});
