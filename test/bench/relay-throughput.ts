// relay-throughput (docs/bridge.md#relay): UDP goodput (iperf3 -u) through a WireGuard tunnel
// whose two ends reach each other through the bridge relay, vs the same tunnel between the same
// namespaces with direct endpoints, in the same run. Three namespaces on one hub: wa, relay, wb;
// wireguard-go in wa and wb; the relay engine in a process of its own in `relay`
// (lib/relay-child.ts), so its CPU per relayed Gbit is measured too. Interleaved rounds,
// medians. Target: relay ≥ 0.5 × direct.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { generateWireGuardKeyPair } from "../../proto/lib/keys.js";
import { cleanupMark, cleanupSince, createTopology, makeTempDir, nsExec, spawnInNamespace, type TopologyNode } from "../e2e/harness/index.js";
import { startRelayChild } from "./lib/relay-control.js";
import { median } from "./lib/stats.js";
import type { Benchmark, BenchResult } from "./registry.js";

const rounds = 3;
const seconds = 4;
const wgPort = 51820;
const relayPort = 51821;
const datagram = 1200;

interface Goodput {
  bps: number;
  lostPercent: number;
}

async function iperf(ns: string, server: string): Promise<Goodput> {
  const r = await nsExec(ns, ["iperf3", "-c", server, "-u", "-b", "0", "-l", String(datagram), "-t", String(seconds), "-J"], { timeoutMs: (seconds + 20) * 1000 });
  const j = JSON.parse(r.stdout) as { end: { sum: { bits_per_second: number; lost_percent: number } } };
  const s = j.end.sum;
  return { bps: s.bits_per_second * (1 - s.lost_percent / 100), lostPercent: s.lost_percent };
}

export const relayThroughput: Benchmark = {
  description: `iperf3 UDP goodput (${datagram}-byte datagrams, unlimited rate, ${seconds} s) over wireguard-go through the bridge relay vs direct between the same namespaces; relay CPU per relayed Gbit; ${rounds} interleaved rounds, medians`,
  async run(ctx): Promise<BenchResult> {
    const mark = cleanupMark();
    try {
      const topo = await createTopology({ nodes: ["wa", "relay", "wb"] });
      const A = topo.node("wa");
      const R = topo.node("relay");
      const B = topo.node("wb");
      const dir = makeTempDir("relay-bench", { mode: 0o700 });
      const tag = String(process.pid % 100_000);
      const side = async (n: TopologyNode, name: string, addr: string) => {
        const kp = generateWireGuardKeyPair();
        const keyFile = join(dir, `${name}.key`);
        writeFileSync(keyFile, `${kp.privateKey}\n`, { mode: 0o600 });
        const iface = `rlb${tag}${name}`;
        await nsExec(n.ns, ["wireguard-go", iface]);
        await nsExec(n.ns, ["wg", "set", iface, "listen-port", String(wgPort), "private-key", keyFile]);
        await nsExec(n.ns, ["ip", "addr", "add", `${addr}/24`, "dev", iface]);
        await nsExec(n.ns, ["ip", "link", "set", iface, "up"]);
        return { n, iface, pub: kp.publicKey, addr };
      };
      const a = await side(A, "a", "10.201.0.1");
      const b = await side(B, "b", "10.201.0.2");
      const peer = async (from: typeof a, to: typeof a, endpoint: string) =>
        nsExec(from.n.ns, ["wg", "set", from.iface, "peer", to.pub, "allowed-ips", `${to.addr}/32`, "endpoint", endpoint]);
      const useEndpoints = async (relayed: boolean) => {
        await peer(a, b, relayed ? `${R.ip}:${relayPort}` : `${B.ip}:${wgPort}`);
        await peer(b, a, relayed ? `${R.ip}:${relayPort}` : `${A.ip}:${wgPort}`);
        // A handshake over the new path before measuring.
        await nsExec(A.ns, ["ping", "-c", "3", "-i", "0.2", "-W", "2", b.addr], { timeoutMs: 10_000 });
      };
      const server = spawnInNamespace({ ns: B.ns, name: "iperf3-server", argv: ["iperf3", "-s", "-B", b.addr, "--forceflush"] });
      await server.waitForLine(/Server listening/, 10_000);
      const relay = await startRelayChild(relayPort, ["ip", "netns", "exec", R.ns]);
      await relay.setSessions([{ id: "bench", peerA: { id: "a", ip: A.ip, port: wgPort }, peerB: { id: "b", ip: B.ip, port: wgPort }, expiresAt: Date.now() + 3_600_000, port: relayPort }]);
      const direct: number[] = [];
      const relayed: number[] = [];
      const cpuPerGbit: number[] = [];
      try {
        for (let r = 0; r < rounds && !ctx.signal.aborted; r++) {
          await useEndpoints(false);
          const d = await iperf(A.ns, b.addr);
          direct.push(d.bps);
          await useEndpoints(true);
          const before = await relay.stats();
          const x = await iperf(A.ns, b.addr);
          const after = await relay.stats();
          relayed.push(x.bps);
          const gbit = ((after.bytes - before.bytes) * 8) / 1e9;
          cpuPerGbit.push((after.cpu_us - before.cpu_us) / 1e6 / gbit);
          ctx.progress(`round ${r + 1}: direct ${(d.bps / 1e6).toFixed(0)} Mbit/s (loss ${d.lostPercent.toFixed(1)}%), relayed ${(x.bps / 1e6).toFixed(0)} Mbit/s (loss ${x.lostPercent.toFixed(1)}%), relay CPU ${cpuPerGbit.at(-1)!.toFixed(2)} s/Gbit`);
        }
      } finally {
        await relay.stop();
      }
      const value = median(relayed) / 1e6;
      const floor = median(direct) / 1e6;
      return { name: "relay-throughput", value, unit: "Mbit/s", floor, ratio: value / floor, target: ">=0.5", extra: { relay_cpu_s_per_gbit: median(cpuPerGbit) } };
    } finally {
      await cleanupSince(mark);
    }
  },
};
