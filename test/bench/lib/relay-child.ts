import { createInterface } from "node:readline";
import { RelayEngine, type RelaySessionInput } from "../../../agent/bridge/relay-engine.js";

// The relay under measurement, in a process of its own so its CPU time is its own (and, for
// relay-throughput, in the bridge's namespace). Started as `plexd-bench.js --relay-child PORT`;
// reads one JSON command per stdin line and answers one JSON line on stdout:
//   {"op":"sessions","sessions":[RelaySessionInput...]}  replace every session → {"ok":true}
//   {"op":"stats"}  → {"cpu_us", "packets", "bytes", "unknown", "sessions"}

export const relayChildFlag = "--relay-child";

export async function runRelayChild(port: number): Promise<void> {
  const engine = new RelayEngine({ listenPort: port, maxSessions: 100_000, idleMs: 3_600_000 });
  await engine.start();
  process.stdout.write(`${JSON.stringify({ ready: true, port })}\n`);
  for await (const line of createInterface({ input: process.stdin })) {
    const cmd = JSON.parse(line) as { op: string; sessions?: RelaySessionInput[] };
    if (cmd.op === "sessions") {
      for (const id of engine.ids()) engine.remove(id, "revoked");
      for (const s of cmd.sessions ?? []) await engine.add(s);
      process.stdout.write(`${JSON.stringify({ ok: true })}\n`);
    } else if (cmd.op === "stats") {
      const cpu = process.cpuUsage();
      const c = engine.counters;
      process.stdout.write(`${JSON.stringify({ cpu_us: cpu.user + cpu.system, packets: c.packets_relayed_total, bytes: c.bytes_relayed_total, unknown: c.relay_unknown_source_total, sessions: c.sessions })}\n`);
    }
  }
  await engine.stop();
}
