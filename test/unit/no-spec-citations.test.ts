import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { root } from "./imports.js";

// The documents plexd was designed from do not ship with it, so docs/ and code comments must
// point to the repository's own documents (docs/*.md) or state the rule themselves. .ci/ may
// name the workspace it runs in; generated and installed trees are not ours.

const skipDirs = new Set([".git", "node_modules", "dist", ".ci", "gen", "build"]);
const self = "test/unit/no-spec-citations.test.ts";
const citation = /\bspec\/[a-z-]+\.md|\bdesign\.md|\bnode-agent\.md|\bcontrol-plane\.md|bridge-access-observability|\bbridge spec\b|\bnode-agent §/;

function files(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, dir))) {
    const rel = dir === "" ? name : `${dir}/${name}`;
    if (skipDirs.has(name)) continue;
    const st = statSync(join(root, rel));
    if (st.isDirectory()) out.push(...files(rel));
    else if (st.size < 2_000_000) out.push(rel);
  }
  return out;
}

describe("documentation stands on its own", () => {
  it("no file cites design documents that do not ship", () => {
    const all = files("");
    expect(all.length).toBeGreaterThan(100);
    const hits: string[] = [];
    for (const f of all) {
      if (f === self) continue;
      const text = readFileSync(join(root, f), "utf8");
      if (text.includes("\0")) continue; // binary
      text.split("\n").forEach((line, i) => {
        if (citation.test(line)) hits.push(`${relative(".", f)}:${i + 1}: ${line.trim().slice(0, 120)}`);
      });
    }
    expect(hits, "point these to docs/*.md (docs/README.md lists them) or state the rule itself").toEqual([]);
  });
});
