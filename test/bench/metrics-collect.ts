// Agent CPU per metrics collection cycle with 1,000 peers (docs/telemetry.md#metrics). A
// privhelper in a namespace holds a real (wireguard-go or kernel) device with 1,000 peers; the
// agent's MetricsService collects node_resources, tunnel_health (ReadMesh, keys mapped to ids)
// and agent_stats, encodes every point into the ring and sends the batch (gzip) to a stub that
// answers 202. Reported: the median agent CPU per cycle. The floor is the same cycle without
// the per-peer group, so (value - floor) / 1,000 is the per-peer cost. A latency round
// (PingPeers, 32 peers per call) is measured on 64 peers and reported per probed peer.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { parseConfig, type Config } from "../../agent/config/schema.js";
import { createCpClient } from "../../agent/controlplane/http.js";
import { HealthRegistry } from "../../agent/health/registry.js";
import { connectPrivhelper } from "../../agent/privclient/client.js";
import { KernelReconciler } from "../../agent/reconcile/kernel.js";
import { DesiredStateStore } from "../../agent/state/desired.js";
import { probePeers } from "../../agent/telemetry/metrics-latency.js";
import { MetricsService } from "../../agent/telemetry/metrics.js";
import { realClock } from "../../agent/util/clock.js";
import { createLogger } from "../../agent/util/log.js";
import { generateWireGuardKeyPair } from "../../proto/lib/keys.js";
import { bundleArgv } from "../e2e/lib/bundle-argv.js";
import { processCpuMs } from "./lib/privhelper.js";
import { median } from "./lib/stats.js";
import type { Benchmark, BenchContext, BenchResult } from "./registry.js";

const peerCount = 1000;
const cycles = 9;
const latencyPeers = 64;

function privhelperPath(): string {
  const here = fileURLToPath(new URL("./plexd-privhelper.js", import.meta.url));
  return existsSync(here) ? here : join(process.cwd(), "dist", "plexd-privhelper.js");
}

const round1 = (x: number): number => Math.round(x * 10) / 10;

export const metricsCollect: Benchmark = {
  description: `agent CPU of one metrics collection cycle (node_resources, tunnel_health via ReadMesh, agent_stats, encode, gzip, send) with ${peerCount} peers; floor: the same cycle without tunnel_health`,
  async run(ctx: BenchContext): Promise<BenchResult> {
    const tag = randomBytes(3).toString("hex");
    const ns = `pxmet-${tag}`;
    const iface = `plexd${tag}`;
    const work = await mkdtemp(join(tmpdir(), "plexd-metricsbench-"));
    let helper: ChildProcess | undefined;
    const ac = new AbortController();
    const client = connectPrivhelper({ socketPath: join(work, "run", "privhelper.sock") });
    let service: MetricsService | undefined;
    try {
      await writeFile(join(work, "config.yaml"), `mesh:\n  interface: ${iface}\n`);
      await execa("ip", ["netns", "add", ns]);
      helper = spawn("ip", ["netns", "exec", ns, ...bundleArgv(dirname(privhelperPath()), "plexd-privhelper"), "--config", join(work, "config.yaml"), "--socket", join(work, "run", "privhelper.sock"), "--group", "root", "--log-level", "warn"], {
        stdio: ["ignore", "ignore", "inherit"],
      });
      await client.waitReady({ timeoutMs: 15_000 });
      const info = await client.getInfo({});

      const base = { api: "http://127.0.0.1:1", data_dir: work, mesh: { interface: iface }, policy: { enabled: false } };
      const observe = { interval: "5s", batch_interval: "1h", batch_max_size: 5000, buffer_size: 10_000 };
      const full = parseConfig({ ...base, observe: { ...observe, metrics: ["node_resources", "tunnel_health", "agent_stats"] } });
      const noPeers = parseConfig({ ...base, observe: { ...observe, metrics: ["node_resources", "agent_stats"] } });
      let config: Config = full;
      const store = await DesiredStateStore.open(work);
      const local = generateWireGuardKeyPair();
      store.update((s) => {
        for (let i = 0; i < peerCount; i++) {
          const id = `n_${i}`;
          s.peers[id] = { id, public_key: generateWireGuardKeyPair().publicKey, mesh_ip: `10.100.${(i + 2) >> 8}.${(i + 2) & 255}`, endpoint: `192.0.2.${(i % 250) + 2}:51820`, allowed_ips: [], psk: randomBytes(32).toString("base64") };
        }
        return ["peers"];
      });
      const log = createLogger({ name: "bench", level: "warn" });
      const kernel = new KernelReconciler({
        priv: client,
        store,
        config: full,
        local: () => ({ nodeId: "n_local", meshIp: "10.100.0.1", privateKey: local.privateKey }),
        health: new HealthRegistry(),
        log,
        signal: ac.signal,
        now: () => Date.now(),
      });
      ctx.progress(`first apply (the device with ${peerCount} peers)...`);
      await kernel.converge(false, "bench-setup");

      let sentPoints = 0;
      let sentBytes = 0;
      service = new MetricsService({
        config: () => config,
        priv: client,
        cp: createCpClient({ baseUrl: "http://127.0.0.1:1", connectTimeoutMs: 1000, requestTimeoutMs: 1000 }),
        nodeId: () => "n_local",
        token: () => "",
        peers: () => store.state.peers,
        sseReconnects: () => 0,
        startedAt: Date.now(),
        clock: realClock,
        log,
        send: (body, count) => {
          sentPoints += count;
          sentBytes += body.length;
          return Promise.resolve({ status: 202 });
        },
      });
      const s = service;
      const cycle = async (): Promise<{ agent: number; helper: number; points: number }> => {
        const before = sentPoints;
        const c0 = process.cpuUsage();
        const h0 = processCpuMs(info.pid);
        await s.collect(ac.signal);
        await s.pipeline.flush();
        const c = process.cpuUsage(c0);
        return { agent: (c.user + c.system) / 1000, helper: processCpuMs(info.pid) - h0, points: sentPoints - before };
      };
      const measure = async (label: string): Promise<{ agent: number; helper: number; points: number }> => {
        await cycle(); // warm-up: JIT, first ReadMesh
        const runs: { agent: number; helper: number; points: number }[] = [];
        for (let i = 0; i < cycles; i++) {
          runs.push(await cycle());
          ctx.progress(`${label} cycle ${i + 1}/${cycles}: agent CPU ${runs.at(-1)!.agent.toFixed(1)} ms, privhelper CPU ${runs.at(-1)!.helper} ms, ${runs.at(-1)!.points} points`);
        }
        return { agent: median(runs.map((r) => r.agent)), helper: median(runs.map((r) => r.helper)), points: median(runs.map((r) => r.points)) };
      };
      const withPeers = await measure("1,000 peers");
      const bodyKiB = sentBytes / (cycles + 1) / 1024;
      if (withPeers.points !== peerCount + 2) throw new Error(`a cycle sent ${withPeers.points} points, expected ${peerCount + 2}`);
      config = noPeers;
      const floor = await measure("no per-peer group");
      const perPeerUs = ((withPeers.agent - floor.agent) / peerCount) * 1000;
      ctx.progress(`gzip body of a 1,000-peer cycle: ${bodyKiB.toFixed(1)} KiB`);

      // Latency: one round over 64 peers (two PingPeers calls of 32). The peers do not answer
      // (no tunnel partner), so each call waits for the 1 s reply timeout.
      const probed = Object.values(store.state.peers).slice(0, latencyPeers);
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      const round = await probePeers(client, probed, Date.now, ac.signal);
      const latWall = performance.now() - t0;
      const latCpu = process.cpuUsage(c0);
      const latAgentMs = (latCpu.user + latCpu.system) / 1000;
      if (round.samples.size !== latencyPeers) throw new Error(`latency round answered ${round.samples.size} of ${latencyPeers} peers`);
      ctx.progress(`latency round, ${latencyPeers} peers: agent CPU ${latAgentMs.toFixed(1)} ms, wall ${latWall.toFixed(0)} ms (${(latWall / (latencyPeers / 32)).toFixed(0)} ms per call of 32)`);
      ctx.progress(`medians: agent CPU ${withPeers.agent.toFixed(1)} ms per cycle at ${peerCount} peers, ${floor.agent.toFixed(1)} ms without per-peer points; ${perPeerUs.toFixed(1)} µs per peer; privhelper CPU ${withPeers.helper} ms (ReadMesh)`);
      return {
        name: "metrics-collect",
        value: round1(withPeers.agent),
        unit: "ms agent CPU per collection cycle at 1,000 peers",
        floor: round1(floor.agent),
        ratio: floor.agent > 0 ? round1(withPeers.agent / floor.agent) : null,
        target: "report",
        extra: { per_peer_us: round1(perPeerUs), privhelper_ms: withPeers.helper, latency_agent_us_per_peer: round1((latAgentMs / latencyPeers) * 1000), latency_wall_ms_per_32: Math.round(latWall / (latencyPeers / 32)) },
      };
    } finally {
      ac.abort();
      await service?.close().catch(() => undefined);
      await client.teardown({}, { timeoutMs: 30_000 }).catch(() => undefined);
      client.close();
      if (helper?.pid !== undefined && helper.exitCode === null) {
        const exited = new Promise((r) => helper!.once("exit", r));
        helper.kill("SIGTERM");
        const timer = setTimeout(() => helper!.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(timer);
      }
      await execa("ip", ["netns", "del", ns], { reject: false });
      await rm(work, { recursive: true, force: true });
    }
  },
};
