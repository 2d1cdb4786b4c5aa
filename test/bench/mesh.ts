// Mesh benchmarks (design.md §6): ApplyMesh through privhelper against raw `wg setconf` of
// the same configuration, the cost of a one-peer change, and unary RPC latency.
import { create } from "@bufbuild/protobuf";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { generateWireGuardKeyPair } from "../../agent/identity/keys.js";
import { MeshSpecSchema, WireGuardPeerSchema, type MeshSpec } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { median, percentile, startBenchPrivhelper, type BenchPrivhelper } from "./lib/privhelper.js";
import type { Benchmark, BenchContext, BenchResult } from "./registry.js";

const peerCount = 1000;
const rounds = 5;

function meshSpec(iface: string, privateKey: string, peers: { publicKey: string; psk: string; i: number }[], port = 51820): MeshSpec {
  return create(MeshSpecSchema, {
    interface: iface,
    privateKey,
    listenPort: port,
    addresses: ["10.100.0.1/32"],
    peers: peers.map((p) =>
      create(WireGuardPeerSchema, { publicKey: p.publicKey, presharedKey: p.psk, endpoint: `192.0.2.${(p.i % 250) + 2}:${51820 + (p.i % 100)}`, allowedIps: [`10.100.${(p.i + 2) >> 8}.${(p.i + 2) & 255}/32`], persistentKeepalive: 25 }),
    ),
  });
}

function setconfText(spec: MeshSpec): string {
  const lines = ["[Interface]", `PrivateKey = ${spec.privateKey}`, `ListenPort = ${spec.listenPort}`];
  for (const p of spec.peers) lines.push("[Peer]", `PublicKey = ${p.publicKey}`, `PresharedKey = ${p.presharedKey}`, `Endpoint = ${p.endpoint}`, `AllowedIPs = ${p.allowedIps.join(", ")}`, `PersistentKeepalive = ${p.persistentKeepalive}`);
  return lines.join("\n") + "\n";
}

const randomPeers = (n: number) => Array.from({ length: n }, (_, i) => ({ publicKey: generateWireGuardKeyPair().publicKey, psk: randomBytes(32).toString("base64"), i }));

interface MeshRun {
  fresh: number[];
  raw: number[];
  incremental: number[];
}

/** Interleaved rounds: raw setconf on a second empty device, fresh apply, then a one-peer change. */
async function measure(ctx: BenchContext, ph: BenchPrivhelper): Promise<MeshRun> {
  const local = generateWireGuardKeyPair();
  const peers = randomPeers(peerCount);
  const spec = meshSpec(ph.iface, local.privateKey, peers);
  // The floor device: the same wireguard-go, set up by hand, configured with raw wg setconf.
  const rawIf = `${ph.iface.slice(0, 11)}r`;
  const conf = join(ph.work, "raw.conf");
  await writeFile(conf, setconfText({ ...spec, listenPort: 51821 } as MeshSpec), { mode: 0o600 });
  await writeFile(join(ph.work, "empty.conf"), `[Interface]\nPrivateKey = ${local.privateKey}\nListenPort = 51821\n`, { mode: 0o600 });
  const out: MeshRun = { fresh: [], raw: [], incremental: [] };
  for (let r = 0; r < rounds && !ctx.signal.aborted; r++) {
    // Fresh means no device at all: both sides start wireguard-go and configure 1,000 peers.
    // (The same comparison from an up, empty device goes to stderr.)
    await ph.client.teardown({}, { timeoutMs: 30_000 });
    let t = performance.now();
    await ph.inNs(["wireguard-go", rawIf]); // daemonizes once the device is ready
    await ph.inNs(["wg", "setconf", rawIf, conf]);
    await ph.inNs(["ip", "link", "set", rawIf, "up"]);
    out.raw.push(performance.now() - t);
    t = performance.now();
    const res = await ph.client.applyMesh({ spec }, { timeoutMs: 60_000 });
    out.fresh.push(performance.now() - t);
    if (!res.result?.changed || res.result.error) throw new Error(`fresh apply failed: ${JSON.stringify(res.result)}`);
    // The other variant: both from an up device without peers.
    await ph.client.applyMesh({ spec: meshSpec(ph.iface, local.privateKey, []) }, { timeoutMs: 60_000 });
    await ph.inNs(["wg", "setconf", rawIf, join(ph.work, "empty.conf")]);
    t = performance.now();
    await ph.inNs(["wg", "setconf", rawIf, conf]);
    const rawWarm = performance.now() - t;
    t = performance.now();
    await ph.client.applyMesh({ spec }, { timeoutMs: 60_000 });
    ctx.progress(`  from an up, empty device: wg setconf ${rawWarm.toFixed(0)} ms, ApplyMesh ${(performance.now() - t).toFixed(0)} ms`);
    // One peer changed out of 1,000 (a new endpoint), the full spec sent as the agent does.
    const changed = meshSpec(ph.iface, local.privateKey, peers);
    changed.peers[r]!.endpoint = `198.51.100.${r + 1}:4000`;
    t = performance.now();
    const inc = await ph.client.applyMesh({ spec: changed }, { timeoutMs: 60_000 });
    out.incremental.push(performance.now() - t);
    if (inc.result?.plan.length !== 1) throw new Error(`incremental plan is not one step: ${JSON.stringify(inc.result?.plan.slice(0, 3))}`);
    ctx.progress(`round ${r + 1}/${rounds}: wg setconf ${out.raw.at(-1)!.toFixed(0)} ms, ApplyMesh fresh ${out.fresh.at(-1)!.toFixed(0)} ms, one peer changed ${out.incremental.at(-1)!.toFixed(1)} ms`);
    await ph.inNs(["ip", "link", "del", rawIf]).catch(() => "");
  }
  return out;
}

let cached: Promise<MeshRun> | undefined;
/** mesh-apply and mesh-incremental share one run (the incremental floor is the fresh apply). */
async function meshRun(ctx: BenchContext): Promise<MeshRun> {
  cached ??= (async () => {
    const ph = await startBenchPrivhelper("mesh");
    try {
      return await measure(ctx, ph);
    } finally {
      await ph.close();
    }
  })();
  return cached;
}

export const meshApply: Benchmark = {
  description: `ApplyMesh with ${peerCount} peers, fresh (no device: privhelper creates it) vs wireguard-go + raw wg setconf of the same config + link up (${rounds} interleaved rounds, medians)`,
  async run(ctx): Promise<BenchResult> {
    const r = await meshRun(ctx);
    const value = median(r.fresh);
    const floor = median(r.raw);
    return { name: "mesh-apply", value, unit: "ms", floor, ratio: value / floor, target: "<=1.5" };
  },
};

export const meshIncremental: Benchmark = {
  description: `ApplyMesh of the full ${peerCount}-peer spec with one peer changed, vs the fresh apply of the same run`,
  async run(ctx): Promise<BenchResult> {
    const r = await meshRun(ctx);
    const value = median(r.incremental);
    const floor = median(r.fresh);
    return { name: "mesh-incremental", value, unit: "ms", floor, ratio: value / floor, target: "<=0.1" };
  },
};

export const privhelperRpc: Benchmark = {
  description: "unary RPC (GetInfo) on privhelper's unix socket: p50 reported, p99 on stderr and as privhelper-rpc-p99",
  async run(ctx): Promise<BenchResult> {
    const ph = await startBenchPrivhelper("rpc");
    try {
      for (let i = 0; i < 300; i++) await ph.client.getInfo({});
      const times: number[] = [];
      for (let i = 0; i < 3000 && !ctx.signal.aborted; i++) {
        const t = performance.now();
        await ph.client.getInfo({});
        times.push(performance.now() - t);
      }
      const p50 = percentile(times, 50);
      const p99 = percentile(times, 99);
      ctx.progress(`GetInfo x${times.length}: p50 ${p50.toFixed(3)} ms, p99 ${p99.toFixed(3)} ms`);
      console.log(JSON.stringify({ name: "privhelper-rpc-p99", value: Math.round(p99 * 1000) / 1000, unit: "ms", floor: null, ratio: null, target: "<=10" }));
      return { name: "privhelper-rpc", value: Math.round(p50 * 1000) / 1000, unit: "ms (p50)", floor: null, ratio: null, target: "<=1" };
    } finally {
      await ph.close();
    }
  },
};
