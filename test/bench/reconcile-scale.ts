// Agent CPU per peer event at 100 vs 10,000 peers (design.md §6: flat, within 2x). In
// process: the real dispatcher writes the desired-state store and the real kernel
// reconciler renders and serialises both specs for a privhelper stand-in that answers at
// once (the request is still encoded with toBinary, so building the message counts). Events
// arrive back to back as a stream delivers them, and the coalescing reconciler merges them;
// the cost of isolated events (reconciler idle between them) is printed on stderr.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { parseConfig } from "../../agent/config/schema.js";
import { dispatchEvent } from "../../agent/controlplane/dispatch.js";
import { HealthRegistry } from "../../agent/health/registry.js";
import type { PrivClient } from "../../agent/privclient/client.js";
import { KernelReconciler } from "../../agent/reconcile/kernel.js";
import { DesiredStateStore } from "../../agent/state/desired.js";
import { createLogger } from "../../agent/util/log.js";
import { ApplyFirewallRequestSchema, ApplyMeshRequestSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import type { Benchmark, BenchContext, BenchResult } from "./registry.js";

const log = createLogger({ name: "bench", level: "silent" });
const key = (): string => randomBytes(32).toString("base64");

function fakePriv(): PrivClient {
  const ok = { result: { changed: true, plan: [], failedStep: "", rolledBack: false, error: "" } };
  return {
    applyMesh: async (req: object) => (toBinary(ApplyMeshRequestSchema, create(ApplyMeshRequestSchema, req as never)), ok),
    applyFirewall: async (req: object) => (toBinary(ApplyFirewallRequestSchema, create(ApplyFirewallRequestSchema, req as never)), ok),
  } as unknown as PrivClient;
}

async function perEventCpu(peers: number, events: number, isolated: boolean): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), "plexd-scale-"));
  const ac = new AbortController();
  try {
    const config = parseConfig({ api: "http://127.0.0.1:1", data_dir: dir, policy: { default: "allow" } });
    const store = await DesiredStateStore.open(dir);
    store.update((s) => {
      for (let i = 0; i < peers; i++) s.peers[`n_${i}`] = { id: `n_${i}`, public_key: key(), mesh_ip: `10.100.${(i + 2) >> 8}.${(i + 2) & 255}`, endpoint: "", allowed_ips: [], psk: key() };
      return ["peers"];
    });
    const kernel = new KernelReconciler({ priv: fakePriv(), store, config, local: () => ({ nodeId: "n_local", meshIp: "10.100.0.1", privateKey: key() }), health: new HealthRegistry(), log, signal: ac.signal, now: () => Date.now() });
    await kernel.converge(false, "seed");
    await kernel.idle();
    const ctx = { store, log, mode: "node" as const, verifiedWith: "current" as const, onSigningKeyRotated: () => undefined, onRotateKeys: () => undefined, triggerReconcile: () => undefined };
    const c0 = process.cpuUsage();
    for (let e = 0; e < events; e++) {
      const i = peers + e;
      dispatchEvent("peer_added", `evt_${e}`, { id: `n_${i}`, public_key: key(), mesh_ip: `10.101.${i >> 8 & 255}.${i & 255}`, endpoint: "192.0.2.9:51820", allowed_ips: [], psk: key() }, ctx);
      // A stream hands the parser's events over in the same turn; isolated events wait.
      if (isolated) await kernel.idle();
      else if (e % 50 === 49) await new Promise((r) => setImmediate(r));
    }
    await kernel.idle();
    const c = process.cpuUsage(c0);
    await store.flush();
    return (c.user + c.system) / 1000 / events;
  } finally {
    ac.abort();
    await rm(dir, { recursive: true, force: true });
  }
}

export const reconcileScale: Benchmark = {
  description: "agent CPU per peer_added event (dispatch, store, coalesced render + encode of mesh and firewall specs) at 10,000 vs 100 peers, events streamed back to back",
  async run(ctx: BenchContext): Promise<BenchResult> {
    await perEventCpu(100, 200, false); // warm-up (JIT)
    const small = await perEventCpu(100, 500, false);
    const large = await perEventCpu(10_000, 500, false);
    ctx.progress(`streamed: ${small.toFixed(3)} ms/event at 100 peers, ${large.toFixed(3)} ms/event at 10,000 peers`);
    const smallIso = await perEventCpu(100, 100, true);
    const largeIso = await perEventCpu(10_000, 20, true);
    ctx.progress(`isolated (one apply per event): ${smallIso.toFixed(3)} ms/event at 100 peers, ${largeIso.toFixed(3)} ms/event at 10,000 peers (ratio ${(largeIso / smallIso).toFixed(1)})`);
    return { name: "reconcile-scale", value: Math.round(large * 1000) / 1000, unit: "ms CPU per event at 10,000 peers", floor: Math.round(small * 1000) / 1000, ratio: large / small, target: "<=2" };
  },
};
