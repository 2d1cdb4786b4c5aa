import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { importsOf, root } from "./imports.js";

// docs/architecture.md#privhelper: privhelper is what operators audit, so its size is a budget, not a wish.
// 2,000 lines (every line of its non-test TypeScript: code, comments and blank lines; tests,
// testdata and generated code excluded) for the RPCs it had when the budget was set; at most
// 150 more for each RPC added to the privhelper contract since, and never past 3,000 for the
// whole table of docs/architecture.md#privhelper.

const baseRpcs = 8;
const basePerRpc = { base: 2_000, perRpc: 150, ceiling: 3_000 };

export function budgetFor(rpcs: number): number {
  return Math.min(basePerRpc.ceiling, basePerRpc.base + basePerRpc.perRpc * Math.max(0, rpcs - baseRpcs));
}

function productionFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, dir))) {
    const rel = join(dir, name);
    if (name === "testdata" || name === "gen" || name === "node_modules") continue;
    if (statSync(join(root, rel)).isDirectory()) out.push(...productionFiles(rel));
    else if (/\.tsx?$/.test(name) && !/\.test\.tsx?$/.test(name)) out.push(rel);
  }
  return out;
}

const lines = (file: string): number => readFileSync(join(root, file), "utf8").split("\n").length - 1;

/** proto/lib modules the root helper loads (outside the budget, counted for the record). */
function sharedImports(): string[] {
  const seen = new Set<string>();
  const visit = (file: string): void => {
    for (const spec of importsOf(file)) {
      if (!spec.startsWith(".")) continue;
      const target = relative(root, resolve(root, dirname(file), spec)).replace(/\.js$/, ".ts");
      if (!target.startsWith("proto/lib/") || seen.has(target)) continue;
      seen.add(target);
      visit(target);
    }
  };
  for (const f of productionFiles("privhelper")) visit(f);
  return [...seen].sort();
}

describe("privhelper size budget", () => {
  it("stays within 2,000 lines plus 150 per RPC added since, never past 3,000", () => {
    const rpcs = (readFileSync(join(root, "proto/plexd/priv/v1/priv.proto"), "utf8").match(/^\s*rpc\s+\w+\s*\(/gm) ?? []).length;
    const files = productionFiles("privhelper");
    const total = files.reduce((n, f) => n + lines(f), 0);
    const shared = sharedImports();
    const sharedTotal = shared.reduce((n, f) => n + lines(f), 0);
    console.log(`privhelper: ${total} lines in ${files.length} files, ${rpcs} RPCs, budget ${budgetFor(rpcs)}; it also loads ${sharedTotal} lines of proto/lib (${shared.join(", ")})`);
    expect(total).toBeLessThanOrEqual(budgetFor(rpcs));
  });

  it("the rule grows by 150 per RPC and stops at 3,000", () => {
    expect([budgetFor(8), budgetFor(9), budgetFor(12), budgetFor(20), budgetFor(30)]).toEqual([2_000, 2_150, 2_600, 3_000, 3_000]);
  });
});
