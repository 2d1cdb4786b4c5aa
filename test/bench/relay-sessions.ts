// relay-sessions (docs/bridge.md#relay): the relay's CPU per relayed datagram with 1,000
// concurrent sessions vs 1 session, same datagrams, same process. The relay runs in a child
// process (lib/relay-child.ts) so its CPU time is its own; this process blasts 200-byte
// datagrams on loopback from side A of every session (round robin) and side B sockets sink
// them. Interleaved rounds, medians. Target: ≤ 1.5×.
import { createSocket, type Socket } from "node:dgram";
import type { RelaySessionInput } from "../../agent/bridge/relay-engine.js";
import { startRelayChild, type RelayChild } from "./lib/relay-control.js";
import { median } from "./lib/stats.js";
import type { Benchmark, BenchResult } from "./registry.js";

const many = 1000;
const rounds = 5;
const roundMs = 1500;
const relayPort = 47_821;

async function bindMany(n: number): Promise<Socket[]> {
  const out: Socket[] = [];
  for (let i = 0; i < n; i++) {
    const s = createSocket("udp4");
    s.on("message", () => undefined);
    await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
    out.push(s);
  }
  return out;
}

/** Sends for `ms` from the first `n` A sockets in turn, yielding to the loop between bursts. */
async function blast(senders: Socket[], n: number, ms: number): Promise<void> {
  const msg = Buffer.alloc(200, 0x42);
  msg[0] = 4;
  const end = Date.now() + ms;
  let i = 0;
  while (Date.now() < end) {
    for (let k = 0; k < 32; k++) {
      senders[i]!.send(msg, relayPort, "127.0.0.1");
      i = (i + 1) % n;
    }
    await new Promise((r) => setImmediate(r));
  }
}

async function measure(relay: RelayChild, senders: Socket[], n: number): Promise<number> {
  const before = await relay.stats();
  await blast(senders, n, roundMs);
  await new Promise((r) => setTimeout(r, 100));
  const after = await relay.stats();
  const packets = after.packets - before.packets;
  if (packets < 1000) throw new Error(`only ${packets} datagrams relayed in a round`);
  return ((after.cpu_us - before.cpu_us) * 1000) / packets;
}

export const relaySessions: Benchmark = {
  description: `relay CPU per relayed 200-byte datagram with ${many} concurrent sessions vs 1 (relay in its own process on loopback, ${rounds} interleaved rounds of ${roundMs} ms, medians)`,
  async run(ctx): Promise<BenchResult> {
    const a = await bindMany(many);
    const b = await bindMany(many);
    const relay = await startRelayChild(relayPort);
    try {
      const sessions = (n: number): RelaySessionInput[] =>
        Array.from({ length: n }, (_, i) => ({
          id: `s${i}`,
          peerA: { id: `a${i}`, ip: "127.0.0.1", port: a[i]!.address().port },
          peerB: { id: `b${i}`, ip: "127.0.0.1", port: b[i]!.address().port },
          expiresAt: Date.now() + 3_600_000,
          port: relayPort,
        }));
      const one: number[] = [];
      const thousand: number[] = [];
      for (let r = 0; r < rounds && !ctx.signal.aborted; r++) {
        await relay.setSessions(sessions(1));
        one.push(await measure(relay, a, 1));
        await relay.setSessions(sessions(many));
        thousand.push(await measure(relay, a, many));
        ctx.progress(`round ${r + 1}: 1 session ${one.at(-1)!.toFixed(0)} ns/datagram, ${many} sessions ${thousand.at(-1)!.toFixed(0)} ns/datagram`);
      }
      const value = median(thousand);
      const floor = median(one);
      return { name: "relay-sessions", value, unit: "ns/datagram", floor, ratio: value / floor, target: "<=1.5" };
    } finally {
      await relay.stop();
      for (const s of [...a, ...b]) s.close();
    }
  },
};
