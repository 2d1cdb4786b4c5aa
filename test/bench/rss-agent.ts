// rss-agent (docs/testing.md#performance-targets: agent RSS, idle, 1,000 peers <= 80 MB). Everything real: mockcp
// (hub namespace, TLS) holding 1,000 registered nodes besides ours, the agent as production
// runs it (`plexd up` as user plexd in its own namespace, the built bundles, like the e2e
// tests), the root privhelper beside it and wireguard-go. The 1,000 peer nodes register with
// mockcp directly (POST /v1/register over its unix socket) before the agent does, so the
// agent gets all of them in its registration answer and applies them in one go; with
// `policy: {default: allow}` every one of them is a visible peer. They never report an
// endpoint, so wireguard-go sends nothing to them: idle means idle.
//
// Measured once privhelper's device holds all 1,000 peers: the agent is then idle, but not
// still — heartbeats every 30 s, metrics every 15 s, a state pull of all 1,000 peers every
// 60 s — so its RSS is a saw-tooth (garbage piles up until a major GC), and right after the
// start it holds the young generation grown during start-up until V8's memory reducer gives
// it back 15-25 s later (seen in traces: ~101 MB for 16 s, then ~78 MB). The figure is the
// median VmRSS over one whole reconcile interval (60 samples, 1 s apart) that starts 75 s
// after the apply, past the first periodic state pull; min and max go to stderr, max also
// into the JSON line. Floor: a bare waiting node, same run. stderr: RssAnon/RssFile, the cost of the agent's dependencies, and with
// PLEXD_BENCH_MEMPROBE=1 the agent's own heap breakdown before and after a full GC.
// PLEXD_BENCH_AGENT_FLAGS adds node flags to the agent and the floor.
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { connectPrivhelper } from "../../agent/privclient/client.js";
import { generateWireGuardKeyPair } from "../../proto/lib/keys.js";
import { cleanupMark, cleanupSince, createTopology, ensureSystemUsers, makeTempDir } from "../e2e/harness/index.js";
import { cpPort, startCpOnHub } from "../e2e/lib/cp.js";
import { identityOf } from "../e2e/lib/mesh.js";
import { shippedFlags } from "../e2e/lib/bundle-argv.js";
import { createNode, distDir, type PlexdNode } from "../e2e/lib/node.js";
import { agentNodeFlags } from "./lib/node-flags.js";
import { agentSteps, dependencyTable, formatDependencyTable } from "./lib/rss-deps.js";
import { bareNodeRss, fmtProbe, fmtRss, makeMemProbe, memProbeWanted, rssOverWindow, type MemProbe } from "./lib/rss.js";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { waitFor } from "./lib/wait.js";
import type { Benchmark, BenchContext, BenchResult } from "./registry.js";

const peerCount = 1000;
/** Registrations in flight at once while seeding mockcp. */
const seedParallel = 16;



/** Registers `n` nodes with mockcp as their agents would (POST /v1/register), `seedParallel` at a time. */
async function seedPeers(cp: LaunchedMockcp, n: number, signal: AbortSignal): Promise<void> {
  const { token } = await cp.client.createToken({ uses: n, ttlSeconds: 3600 });
  let next = 0;
  const worker = async () => {
    while (next < n && !signal.aborted) {
      const i = next++;
      const r = await cp.client.request("POST", "/v1/register", { body: { token, public_key: generateWireGuardKeyPair().publicKey, hostname: `peer-${i}`, metadata: { os: "linux" } } });
      if (r.status !== 201) throw new Error(`registering peer ${i}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
    }
  };
  await Promise.all(Array.from({ length: seedParallel }, worker));
}

export const rssAgent: Benchmark = {
  description: `agent (plexd up) RSS (VmRSS, settled) idle with ${peerCount} peers applied (real mockcp, privhelper, wireguard-go) vs a bare waiting node`,
  async run(ctx: BenchContext): Promise<BenchResult> {
    // The agent runs with the V8 flags of the plexd bundle (none today); the floor too.
    const flags = [...shippedFlags(join(distDir, "plexd.js")), ...agentNodeFlags()];
    const floor = await bareNodeRss(flags, ctx.signal);
    ctx.progress(`bare node ${flags.join(" ")}: ${fmtRss(floor)}`);
    ctx.progress(formatDependencyTable(await dependencyTable(agentSteps, flags), flags));

    const mark = cleanupMark();
    let node: PlexdNode | undefined;
    try {
      const users = await ensureSystemUsers();
      const name = `rss${randomBytes(3).toString("hex")}`;
      const topo = await createTopology({ nodes: [name] });
      const cp = await startCpOnHub(topo);
      let t = performance.now();
      await seedPeers(cp, peerCount, ctx.signal);
      ctx.progress(`${peerCount} peer nodes registered with mockcp in ${((performance.now() - t) / 1000).toFixed(1)} s`);

      const { token } = await cp.client.createToken();
      const n = createNode({
        name,
        ns: topo.node(name).ns,
        api: `https://${topo.hub.ip}:${cpPort}`,
        caFile: cp.caFile,
        users,
        token,
        logLevel: "info",
        config: { policy: { default: "allow" }, nat_traversal: { enabled: false } },
      });
      node = n;
      const probe: MemProbe | undefined = memProbeWanted() ? await makeMemProbe(makeTempDir("rss-probe", { mode: 0o700, owner: users.plexd }), "agent") : undefined;
      await n.startPrivhelper();
      t = performance.now();
      const agent = n.startAgent([], { nodeFlags: [...agentNodeFlags(), ...(probe?.flags ?? [])], ...(probe ? { env: probe.env } : {}) });
      await waitFor("registration", () => identityOf(n).node_id, 60_000, ctx.signal, 200);
      const priv = connectPrivhelper({ socketPath: n.privSocket });
      try {
        await waitFor(`${peerCount} peers in the kernel`, async () => ((await priv.readMesh({ interface: n.iface })).peers.length === peerCount ? true : undefined), 180_000, ctx.signal, 200);
      } finally {
        priv.close();
      }
      ctx.progress(`agent started, registered and applied ${peerCount} peers in ${((performance.now() - t) / 1000).toFixed(1)} s`);

      const linesAtApply = agent.output().split("\n").length;
      const idle = await rssOverWindow(agent.pid, {
        signal: ctx.signal,
        warmMs: 75_000,
        windowMs: 60_000,
        onSample: (s, ms) => {
          if (Math.round(ms / 1000) % 5 === 0) ctx.progress(`  idle +${(ms / 1000).toFixed(0)} s: ${s.rss.toFixed(1)} MB`);
        },
      });
      const logged = agent.output().split("\n").length - linesAtApply;
      ctx.progress(`agent idle with ${peerCount} peers: median ${fmtRss(idle.median)}, min ${idle.min.toFixed(1)}, max ${idle.max.toFixed(1)} over ${idle.samples} s; ${logged} log lines meanwhile`);
      if (probe) {
        const r = await probe.read(agent.pid);
        ctx.progress(`agent's own view: ${fmtProbe(r.before)}`);
        if (r.afterFullGc) ctx.progress(`after a full GC: ${fmtProbe(r.afterFullGc)}`);
      }
      if (agent.exited) throw new Error("the agent exited during the measurement");
      const value = idle.median.rss;
      return { name: "rss-agent", value, unit: "MB", floor: floor.rss, ratio: value / floor.rss, target: "<=80", extra: { max: idle.max } };
    } catch (err) {
      const tail = (s: string | undefined) => (s ?? "").split("\n").slice(-15).join("\n");
      if (node) ctx.progress(`agent log tail:\n${tail(node.agent?.output())}\nprivhelper log tail:\n${tail(node.privhelper?.output())}`);
      throw err;
    } finally {
      await cleanupSince(mark);
    }
  },
};
