// mesh-apply (docs/testing.md#performance-targets: ApplyMesh of 1,000 peers, fresh, <= 1.5 x raw `wg setconf` of the
// same config). What "fresh" includes is spelled out in lib/mesh-run.ts: both sides start
// from an up wireguard-go device with key, port and address and no peers; creating the
// device is excluded from both (the variant including it is printed on stderr).
import { meshRun, peerCount } from "./lib/mesh-run.js";
import { median } from "./lib/stats.js";
import type { Benchmark, BenchResult } from "./registry.js";

export const meshApply: Benchmark = {
  description: `ApplyMesh of ${peerCount} peers (keys, PSKs, endpoints, /32 allowed IPs) onto an up, empty wireguard-go device vs raw \`wg setconf\` of the same config onto an identical one, same namespace; device creation excluded from both; interleaved pairs, medians`,
  async run(ctx): Promise<BenchResult> {
    const r = await meshRun(ctx);
    const value = median(r.fresh);
    const floor = median(r.raw);
    return { name: "mesh-apply", value, unit: "ms", floor, ratio: value / floor, target: "<=1.5" };
  },
};
