import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { StopStringMatcher } from "./stop-strings.ts";

/** Feeds `pieces` one by one; returns what was released after each, and the match. */
function feed(
  stops: string[],
  pieces: string[],
): { released: string[]; matched: string | undefined; tail: string } {
  const m = new StopStringMatcher(stops);
  const released: string[] = [];
  let matched: string | undefined;
  for (const p of pieces) {
    const r = m.push(p);
    released.push(r.text);
    matched ??= r.matched;
  }
  return { released, matched, tail: m.flush() };
}

describe("StopStringMatcher", () => {
  it("passes text through untouched without stop strings", () => {
    assert.deepEqual(feed([], ["ab", "c"]).released, ["ab", "c"]);
  });

  it("holds back only a tail that could start a stop string, and releases it when it cannot", () => {
    const r = feed(["END"], ["hello E", "N", "x more"]);
    assert.deepEqual(r.released, ["hello ", "", "ENx more"]);
    assert.equal(r.matched, undefined);
    assert.equal(r.tail, "");
  });

  it("finds a stop string split across pieces and drops it and what follows", () => {
    const r = feed(["END"], ["one E", "N", "D and more"]);
    assert.deepEqual(r.released, ["one ", "", ""]);
    assert.equal(r.matched, "END");
    assert.equal(r.tail, "", "nothing after a match is released");
  });

  it("takes the earliest of several stop strings", () => {
    const r = feed(["world", "lo"], ["hello world"]);
    assert.deepEqual(r.released, ["hel"]);
    assert.equal(r.matched, "lo");
  });

  it("releases the held tail at the end when it never became a stop string", () => {
    const r = feed(["\n\n"], ["line\n"]);
    assert.deepEqual(r.released, ["line"]);
    assert.equal(r.tail, "\n");
  });

  it("ignores text after a match", () => {
    const m = new StopStringMatcher(["x"]);
    assert.deepEqual(m.push("ax"), { text: "a", matched: "x" });
    assert.deepEqual(m.push("more"), { text: "", matched: undefined });
    assert.equal(m.matched, "x");
  });
});
