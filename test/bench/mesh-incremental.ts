// mesh-incremental (docs/testing.md#performance-targets: one peer changed out of 1,000, <= 0.1 x the fresh apply).
// One peer's endpoint or allowed IP changes and the agent's own mesh target sends what it
// sends in that case — a delta on the spec privhelper applied last — which privhelper
// resolves to the whole peer set and diffs against the live device; the floor is the fresh
// 1,000-peer apply measured in the same run (lib/mesh-run.ts). The same change sent as the
// whole spec again is printed on stderr.
import { meshRun, peerCount } from "./lib/mesh-run.js";
import { median } from "./lib/stats.js";
import type { Benchmark, BenchResult } from "./registry.js";

export const meshIncremental: Benchmark = {
  description: `ApplyMesh of one peer's endpoint or allowed IP changed out of ${peerCount}, as the agent sends it (median) vs the fresh ${peerCount}-peer apply of the same run`,
  async run(ctx): Promise<BenchResult> {
    const r = await meshRun(ctx);
    const value = median(r.incremental);
    const floor = median(r.fresh);
    ctx.progress(`the same change sent as the whole spec: median ${median(r.incrementalWhole).toFixed(1)} ms (ratio ${(median(r.incrementalWhole) / floor).toFixed(3)})`);
    return { name: "mesh-incremental", value, unit: "ms", floor, ratio: value / floor, target: "<=0.1" };
  },
};
