import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { ReadMeshResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import type { Peer } from "../mesh/peer.js";
import { NodeResourcesCollector, parseMeminfo, parseNetDev, parseProcStat } from "./metrics-node.js";
import { latencyPoint, tunnelHealth } from "./metrics-peers.js";

const peer = (id: string, key: string, ip: string): Peer => ({ id, public_key: key, mesh_ip: ip, endpoint: "", allowed_ips: [`${ip}/32`], psk: "" });

describe("node_resources parsers", () => {
  it("reads /proc/stat, /proc/meminfo and /proc/net/dev", () => {
    expect(parseProcStat("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n")).toEqual({ busy: 150, total: 1000 });
    expect(parseMeminfo("MemTotal:       2048 kB\nMemFree: 1 kB\nMemAvailable:    1024 kB\n")).toEqual({ total: 2048 * 1024, available: 1024 * 1024 });
    const dev = [
      "Inter-|   Receive                                                |  Transmit",
      " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed",
      "    lo:  999 1 0 0 0 0 0 0  999 1 0 0 0 0 0 0",
      "  eth0: 1000 2 0 0 0 0 0 0  2000 3 0 0 0 0 0 0",
      "plexd0:  10 2 0 0 0 0 0 0  20 3 0 0 0 0 0 0",
    ].join("\n");
    expect(parseNetDev(dev)).toEqual({ rx: 1010, tx: 2020 });
  });

  it("collects every field from the live machine, CPU from the baseline", async () => {
    const c = new NodeResourcesCollector("/tmp");
    await c.start();
    const r = await c.collect();
    expect(r.memory_total_bytes).toBeGreaterThan(r.memory_used_bytes);
    expect(r.disk_total_bytes).toBeGreaterThan(0);
    expect(r.cpu_percent).toBeGreaterThanOrEqual(0);
    expect(r.cpu_percent).toBeLessThanOrEqual(100);
    expect(Object.keys(r).sort()).toEqual(
      ["cpu_percent", "disk_total_bytes", "disk_used_bytes", "load_avg_1", "load_avg_15", "load_avg_5", "memory_total_bytes", "memory_used_bytes", "network_rx_bytes", "network_tx_bytes"],
    );
  });
});

describe("per-peer points", () => {
  const now = Date.parse("2026-01-01T00:10:00.000Z");
  const mesh = create(ReadMeshResponseSchema, {
    peers: [
      { publicKey: "KB", endpoint: "192.0.2.2:51820", lastHandshake: timestampFromMs(now - 200_000), rxBytes: 5n, txBytes: 6n },
      { publicKey: "KA", endpoint: "192.0.2.1:51820", lastHandshake: timestampFromMs(now - 30_500), rxBytes: 1n, txBytes: 2n },
      { publicKey: "KC", endpoint: "" },
      { publicKey: "K-unknown" },
    ],
  });
  const peers = { a: peer("a", "KA", "10.100.0.1"), b: peer("b", "KB", "10.100.0.2"), c: peer("c", "KC", "10.100.0.3") };

  it("maps public keys to peer ids with handshake age and loss", () => {
    const latency = new Map([["a", { rttMs: 1.5, sent: 3, received: 2, lossPercent: 33.33, at: now }]]);
    expect(tunnelHealth(peers, mesh, latency, now)).toEqual([
      { peer_id: "a", endpoint: "192.0.2.1:51820", last_handshake_time: "2026-01-01T00:09:29.500Z", handshake_age_seconds: 30, rx_bytes: 1, tx_bytes: 2, handshake_succeeded: true, packet_loss_percent: 33.33 },
      { peer_id: "b", endpoint: "192.0.2.2:51820", last_handshake_time: "2026-01-01T00:06:40.000Z", handshake_age_seconds: 200, rx_bytes: 5, tx_bytes: 6, handshake_succeeded: false, packet_loss_percent: null },
      { peer_id: "c", endpoint: "", last_handshake_time: null, handshake_age_seconds: null, rx_bytes: 0, tx_bytes: 0, handshake_succeeded: false, packet_loss_percent: null },
    ]);
    // latency group off: loss is null for everyone
    expect(tunnelHealth(peers, mesh, undefined, now).map((t) => t.packet_loss_percent)).toEqual([null, null, null]);
  });

  it("reports -1 ms for a peer that answered no probe", () => {
    expect(latencyPoint("a", { rttMs: -1, sent: 3, received: 0, lossPercent: 100, at: now })).toEqual({ peer_id: "a", rtt_ms: -1, probes_sent: 3, probes_received: 0 });
    expect(latencyPoint("a", { rttMs: 0.4, sent: 3, received: 3, lossPercent: 0, at: now }).rtt_ms).toBe(0.4);
  });
});
