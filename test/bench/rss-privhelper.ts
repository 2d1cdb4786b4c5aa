// rss-privhelper (docs/testing.md#performance-targets: privhelper RSS after applying 1,000 peers + 10,000 firewall
// rules <= 50 MB, idle <= 45 MB; floor: a bare waiting `node` in the same run). The built
// privhelper runs as root in a namespace of its own (lib/privhelper.ts). Its RSS is read from
// /proc once settled after start (idle), then after one ApplyMesh of 1,000 peers
// (wireguard-go, routes) and one ApplyFirewall of the agent's compilation of 10,000 policy
// rules, once settled again (the value). "Settled": held within 1 MB for 30 s (samples 1 s
// apart), at most 120 s. V8 gives memory back lazily: the young generation grown during the
// applies (to 32 MB) and the old generation's free pages go back only when V8's memory
// reducer runs, which here happens 15-25 s after the last allocation-heavy work (seen in
// traces: ~99 MB flat for 18 s after the applies, then ~68 MB for good). A reading taken
// before that is the apply's peak, not what privhelper holds while idle with that state;
// privhelper has no timers of its own, so once reduced it stays flat.
//
// stderr also gets: RssAnon/RssFile of each figure, the cost of each of privhelper's
// dependencies (lib/rss-deps.ts) under the same node flags, and with PLEXD_BENCH_MEMPROBE=1
// privhelper's own heap breakdown (V8 spaces, external) before and after a full GC.
// privhelper, the floor and the dependency table run with the V8 flags privhelper's bundle
// carries (scripts/node-flags.json); PLEXD_BENCH_PRIVHELPER_FLAGS adds more to all three.
import { create } from "@bufbuild/protobuf";
import { compilePolicy } from "../../agent/policy/compile.js";
import { generateWireGuardKeyPair } from "../../proto/lib/keys.js";
import { FirewallSpecSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { join } from "node:path";
import { makeTempDir } from "../e2e/harness/index.js";
import { shippedFlags } from "../e2e/lib/bundle-argv.js";
import { distDir } from "../e2e/lib/node.js";
import { benchPolicies } from "./firewall-apply.js";
import { meshSpec, randomPeers } from "./lib/mesh-run.js";
import { privhelperNodeFlags } from "./lib/node-flags.js";
import { startBenchPrivhelper } from "./lib/privhelper.js";
import { dependencyTable, formatDependencyTable, privhelperSteps } from "./lib/rss-deps.js";
import { bareNodeRss, fmtProbe, fmtRss, makeMemProbe, memProbeWanted, settledRss, type MemProbe, type SettleOptions } from "./lib/rss.js";
import type { Benchmark, BenchContext, BenchResult } from "./registry.js";

const peerCount = 1000;
const ruleCount = 10_000;

const settleRule = (signal: AbortSignal): SettleOptions => ({ signal, intervalMs: 1000, agree: 30, toleranceMb: 1, minMs: 30_000, capMs: 120_000 });

export const rssPrivhelper: Benchmark = {
  description: `privhelper RSS (VmRSS, settled) after ApplyMesh of ${peerCount} peers + ApplyFirewall of ${ruleCount} rules vs a bare waiting node; idle RSS after start as a field`,
  async run(ctx: BenchContext): Promise<BenchResult> {
    // privhelper runs with its bundle's own V8 flags; the floor and the dependency table too.
    const flags = [...shippedFlags(join(distDir, "plexd-privhelper.js")), ...privhelperNodeFlags()];
    const floor = await bareNodeRss(flags, ctx.signal);
    ctx.progress(`bare node ${flags.join(" ")}: ${fmtRss(floor)}`);
    ctx.progress(formatDependencyTable(await dependencyTable(privhelperSteps, flags), flags));

    const probe: MemProbe | undefined = memProbeWanted() ? await makeMemProbe(makeTempDir("rss-probe"), "privhelper") : undefined;
    const ph = await startBenchPrivhelper("rss", probe ? { nodeFlags: probe.flags, env: probe.env } : {});
    try {
      const report = async (what: string) => {
        if (!probe) return;
        const r = await probe.read(ph.pid);
        ctx.progress(`${what}, privhelper's own view: ${fmtProbe(r.before)}`);
        if (r.afterFullGc) ctx.progress(`${what}, after a full GC: ${fmtProbe(r.afterFullGc)}`);
      };
      const trace = (label: string) => (s: { rss: number }, ms: number) => {
        if (Math.round(ms / 1000) % 5 === 0) ctx.progress(`  ${label} +${(ms / 1000).toFixed(0)} s: ${s.rss.toFixed(1)} MB`);
      };
      const idle = await settledRss(ph.pid, { ...settleRule(ctx.signal), onSample: trace("idle") });
      ctx.progress(`idle after start: ${fmtRss(idle.sample)}${idle.settled ? "" : " (cap reached before it held still)"}`);
      await report("idle");

      const local = generateWireGuardKeyPair();
      const mesh = meshSpec(ph.iface, local.privateKey, 51820, randomPeers(peerCount));
      const compiled = compilePolicy({
        ...benchPolicies(ruleCount),
        local: { id: "n_local", meshIp: "10.100.0.1" },
        config: { enabled: true, default: "deny", logDenied: true, meshInterface: ph.iface, mode: "node" },
      });
      const firewall = create(FirewallSpecSchema, compiled.firewall!);
      const t0 = performance.now();
      const m = await ph.client.applyMesh({ spec: mesh }, { timeoutMs: 120_000, signal: ctx.signal });
      if (!m.result?.changed || m.result.error !== "") throw new Error(`ApplyMesh did not apply: ${JSON.stringify({ error: m.result?.error, failedStep: m.result?.failedStep })}`);
      const afterMesh = performance.now();
      const f = await ph.client.applyFirewall({ spec: firewall }, { timeoutMs: 180_000, signal: ctx.signal });
      if (!f.result?.changed || f.result.failedStep) throw new Error(`ApplyFirewall did not apply: ${JSON.stringify({ error: f.result?.error, failedStep: f.result?.failedStep })}`);
      ctx.progress(`ApplyMesh ${peerCount} peers ${(afterMesh - t0).toFixed(0)} ms, ApplyFirewall ${firewall.chains.reduce((n, c) => n + c.rules.length, 0)} nft rules ${(performance.now() - afterMesh).toFixed(0)} ms`);
      const applied = await settledRss(ph.pid, { ...settleRule(ctx.signal), onSample: trace("applied") });
      ctx.progress(`after the applies: ${fmtRss(applied.sample)}, settled after ${(applied.waitedMs / 1000).toFixed(0)} s${applied.settled ? "" : " (cap reached before it held still)"}`);
      await report("after the applies");
      const value = applied.sample.rss;
      return { name: "rss-privhelper", value, unit: "MB", floor: floor.rss, ratio: value / floor.rss, target: "<=50", extra: { idle: idle.sample.rss } };
    } catch (err) {
      throw new Error(`${err instanceof Error ? err.message : String(err)}\nprivhelper log tail:\n${ph.output().split("\n").slice(-10).join("\n")}`, { cause: err });
    } finally {
      await ph.close();
    }
  },
};
