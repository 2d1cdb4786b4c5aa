// event-latency (design.md §6: event -> peer live in the kernel, p50 <= 20 ms, p99 <= 100 ms).
// The whole path is real: mockcp (hub namespace, TLS) signs a peer_added and sends it over
// SSE to the agent (`plexd up` as user plexd in its own namespace: verify, dispatch, store,
// coalescing reconciler, render, ApplyMesh), and the root privhelper beside it writes the
// peer into wireguard-go. Measured per event: from just before the control-API push to the
// end of the first privhelper ReadMesh (agent's client, polled every ~2 ms) that lists the
// new peer — a conservative figure: the peer appeared somewhere inside that last poll.
// Events are pushed one at a time with a 60-140 ms pause after each is seen, so each is an
// isolated event, not part of a burst. The agent runs with `policy: {default: allow}` (every
// peer is visible), NAT traversal off, and a 1 h reconcile interval so that no state pull
// (which would drop peers mockcp does not know) lands inside the run. stderr also gives the
// poll-free figure — push to privhelper's own "mesh applied" log line — and the ReadMesh
// duration, i.e. the resolution of the polling.
import { randomBytes, randomInt } from "node:crypto";
import { connectPrivhelper } from "../../agent/privclient/client.js";
import { generateWireGuardKeyPair } from "../../agent/identity/keys.js";
import { cleanupMark, cleanupSince, createTopology, ensureSystemUsers } from "../e2e/harness/index.js";
import { cpPort, startCpOnHub } from "../e2e/lib/cp.js";
import { linesWith } from "../e2e/lib/logs.js";
import { identityOf } from "../e2e/lib/mesh.js";
import { createNode, type PlexdNode } from "../e2e/lib/node.js";
import { printResult } from "./lib/report.js";
import { percentile, summary } from "./lib/stats.js";
import type { Benchmark, BenchContext, BenchResult } from "./registry.js";

const events = 100;
const warmup = 5;
/** Second pass without ReadMesh polling (stderr only). */
const quietEvents = 50;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs: number, signal: AbortSignal): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await Promise.resolve().then(probe).catch(() => undefined);
    if (v !== undefined) return v;
    if (signal.aborted) throw new Error(`aborted while waiting for ${what}`);
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** privhelper's "mesh applied" lines (pino: time in epoch ms, peers = desired peer count). */
const appliedAt = (node: PlexdNode, peers: number): number | undefined =>
  linesWith(node.privhelper?.output() ?? "", "mesh applied", { peers }).map((l) => (typeof l.time === "number" ? l.time : Date.parse(String(l.time))))[0];

/** Polls an in-memory probe (no I/O) every 2 ms. */
async function waitForLine(probe: () => number | undefined, timeoutMs: number): Promise<number> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined && !Number.isNaN(v)) return v;
    if (performance.now() > until) throw new Error("privhelper logged no matching mesh apply");
    await sleep(2);
  }
}

export const eventLatency: Benchmark = {
  description: `peer_added pushed at mockcp -> peer listed by privhelper's ReadMesh (real TLS/SSE, agent as user plexd, privhelper, wireguard-go; ${events} isolated events after ${warmup} warm-up); p50 and p99`,
  async run(ctx: BenchContext): Promise<BenchResult> {
    const mark = cleanupMark();
    let node: PlexdNode | undefined;
    try {
      const users = await ensureSystemUsers();
      // A unique node name: the mesh interface is plexd<name>, and wireguard-go's UAPI
      // socket path is shared by every namespace on the machine.
      const name = `lat${randomBytes(3).toString("hex")}`;
      const topo = await createTopology({ nodes: [name] });
      const cp = await startCpOnHub(topo);
      const { token } = await cp.client.createToken();
      node = createNode({
        name,
        ns: topo.node(name).ns,
        api: `https://${topo.hub.ip}:${cpPort}`,
        caFile: cp.caFile,
        users,
        token,
        logLevel: "info",
        config: { policy: { default: "allow" }, nat_traversal: { enabled: false }, reconcile: { interval: "1h" } },
      });
      const n = node;
      await n.startPrivhelper();
      n.startAgent();
      ctx.progress(`node ${name} in ${n.ns} (interface ${n.iface}), mockcp on the hub; waiting for registration and the event stream`);
      const id = await waitFor("registration", () => identityOf(n).node_id, 60_000, ctx.signal);
      await waitFor("event stream", async () => ((await cp.client.listNodes()).find((x) => x.id === id)?.streams ?? 0) > 0 || undefined, 60_000, ctx.signal);
      const priv = connectPrivhelper({ socketPath: n.privSocket });
      try {
        // The first reconcile (state pull, device creation) must be over before measuring.
        await waitFor("the mesh device", async () => (await priv.readMesh({ interface: n.iface })).exists || undefined, 60_000, ctx.signal);
        const base = (await priv.readMesh({ interface: n.iface })).peers.length;

        const lat: number[] = [];
        const latLower: number[] = [];
        const logLat: number[] = [];
        const readMs: number[] = [];
        for (let i = 0; i < warmup + events && !ctx.signal.aborted; i++) {
          const key = generateWireGuardKeyPair().publicKey;
          const payload = { id: `n_bench${i}`, public_key: key, mesh_ip: `10.100.${200 + (i >> 8)}.${(i & 255) + 1}`, endpoint: "", allowed_ips: [], psk: randomBytes(32).toString("base64") };
          const wall0 = Date.now();
          const t0 = performance.now();
          await cp.client.pushEvent(id, { event_type: "peer_added", payload });
          let seenStart = 0;
          for (;;) {
            const s = performance.now();
            const m = await priv.readMesh({ interface: n.iface });
            readMs.push(performance.now() - s);
            if (m.peers.some((p) => p.publicKey === key)) {
              seenStart = s;
              break;
            }
            if (performance.now() - t0 > 15_000) throw new Error(`event ${i} not in the kernel after 15 s`);
            await sleep(2);
          }
          const t1 = performance.now();
          // Let the rest of that converge (firewall apply, store write) finish: isolated events.
          await sleep(60 + randomInt(80));
          const logged = appliedAt(n, base + i + 1);
          if (i < warmup) continue;
          lat.push(t1 - t0);
          latLower.push(seenStart - t0);
          if (logged !== undefined) logLat.push(logged - wall0);
        }
        // Second pass, no polling at all: each ReadMesh runs an `ip` process inside privhelper
        // and competes with the apply it is waiting for. Here the end is privhelper's own
        // "mesh applied" line (logged once wireguard-go and the routes are set).
        const quiet: number[] = [];
        for (let i = 0; i < quietEvents && !ctx.signal.aborted; i++) {
          const k = warmup + events + i;
          const payload = { id: `n_bench${k}`, public_key: generateWireGuardKeyPair().publicKey, mesh_ip: `10.100.${200 + (k >> 8)}.${(k & 255) + 1}`, endpoint: "", allowed_ips: [], psk: randomBytes(32).toString("base64") };
          const wall0 = Date.now();
          await cp.client.pushEvent(id, { event_type: "peer_added", payload });
          const at = await waitForLine(() => appliedAt(n, base + k + 1), 15_000);
          quiet.push(at - wall0);
          await sleep(60 + randomInt(80));
        }
        if (ctx.signal.aborted) throw new Error("aborted");
        ctx.progress(`without polling, push -> privhelper's "mesh applied" log line (1 ms clock): ${summary(quiet)} ms`);
        // privhelper's own account of each apply (validate, read, plan, apply), in ms.
        const phases = linesWith(n.privhelper?.output() ?? "", "mesh applied")
          .slice(-quietEvents)
          .map((l) => l.ms as Record<string, number> | undefined)
          .filter((m): m is Record<string, number> => m !== undefined);
        if (phases.length > 0) {
          ctx.progress(`privhelper's phases of those applies (p50 ms): ${Object.keys(phases[0]!).map((k) => `${k} ${percentile(phases.map((m) => m[k] ?? 0), 50).toFixed(1)}`).join(", ")}`);
        }
        ctx.progress(`push -> ReadMesh lists the peer (end of that poll): ${summary(lat)} ms`);
        ctx.progress(`push -> start of that poll (lower bound): ${summary(latLower)} ms`);
        if (logLat.length > 0) ctx.progress(`while polling, push -> privhelper's "mesh applied" log line (1 ms clock): ${summary(logLat)} ms`);
        ctx.progress(`ReadMesh call duration while polling: ${summary(readMs)} ms`);
        printResult({ name: "event-latency-p50", value: percentile(lat, 50), unit: "ms", floor: null, ratio: null, target: "<=20" }, 1);
        return { name: "event-latency-p99", value: percentile(lat, 99), unit: "ms", floor: null, ratio: null, target: "<=100" };
      } finally {
        priv.close();
      }
    } catch (err) {
      const tail = (s: string | undefined) => (s ?? "").split("\n").slice(-15).join("\n");
      if (node) ctx.progress(`agent log tail:\n${tail(node.agent?.output())}\nprivhelper log tail:\n${tail(node.privhelper?.output())}`);
      throw err;
    } finally {
      await cleanupSince(mark);
    }
  },
};
