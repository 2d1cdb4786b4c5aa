// mesh-incremental (design.md §6: one peer changed out of 1,000, <= 0.1 x the fresh apply).
// The full 1,000-peer spec is sent again with one peer's endpoint or allowed IP changed, as
// the agent does; the floor is the fresh 1,000-peer apply measured in the same run
// (lib/mesh-run.ts).
import { meshRun, peerCount } from "./lib/mesh-run.js";
import { median } from "./lib/stats.js";
import type { Benchmark, BenchResult } from "./registry.js";

export const meshIncremental: Benchmark = {
  description: `ApplyMesh of the full ${peerCount}-peer spec with one peer's endpoint or allowed IP changed (median) vs the fresh ${peerCount}-peer apply of the same run`,
  async run(ctx): Promise<BenchResult> {
    const r = await meshRun(ctx);
    const value = median(r.incremental);
    const floor = median(r.fresh);
    return { name: "mesh-incremental", value, unit: "ms", floor, ratio: value / floor, target: "<=0.1" };
  },
};
