import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { PingPeersRequestSchema, TracerouteRequestSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { privConfigFrom } from "../config.js";
import type { Runner } from "../os/run.js";
import { makePingPeers, makeTraceroute, parsePing, parseTraceroute } from "./ping.js";

// Output recorded from iputils ping 20221126 and traceroute 2.1.2.
const pingOut = `PING 10.100.1.2 (10.100.1.2) from 10.100.1.1 plexd0: 56(84) bytes of data.

--- 10.100.1.2 ping statistics ---
4 packets transmitted, 3 received, 25% packet loss, time 611ms
rtt min/avg/max/mdev = 0.412/0.630/0.871/0.187 ms
`;
const traceOut = `traceroute to 10.100.1.2 (10.100.1.2), 30 hops max, 60 byte packets
 1  10.100.1.2  0.543 ms
`;
const traceLost = ` 1  *
 2  10.100.1.2  1.5 ms
`;

describe("ping and traceroute", () => {
  it("parse the tools' output", () => {
    expect(parsePing("10.100.1.2", pingOut)).toEqual({ address: "10.100.1.2", sent: 4, received: 3, rttMinMs: 0.412, rttAvgMs: 0.63, rttMaxMs: 0.871 });
    expect(parsePing("10.100.1.2", "4 packets transmitted, 0 received, 100% packet loss")).toMatchObject({ sent: 4, received: 0, rttAvgMs: 0 });
    expect(parseTraceroute(traceOut)).toEqual([{ hop: 1, address: "10.100.1.2", rttMs: 0.543 }]);
    expect(parseTraceroute(traceLost)).toEqual([{ hop: 1, address: "", rttMs: 0 }, { hop: 2, address: "10.100.1.2", rttMs: 1.5 }]);
  });

  it("run only for mesh addresses, over the mesh interface, with argument arrays", async () => {
    const calls: string[][] = [];
    const runner: Runner = { run: async (file, args) => (calls.push([file, ...args]), { stdout: file === "ping" ? pingOut : traceOut, stderr: "", exitCode: 0 }), spawnDetached: () => 0 };
    const deps = { config: privConfigFrom({ mesh: { interface: "plexd0" } }), runner };
    const ctx = { signal: new AbortController().signal };
    await expect(makePingPeers(deps)(create(PingPeersRequestSchema, { addresses: ["8.8.8.8"], count: 1 }), ctx)).rejects.toThrow(/not a mesh address/);
    await expect(makePingPeers(deps)(create(PingPeersRequestSchema, { addresses: ["10.100.1.2; reboot"], count: 1 }), ctx)).rejects.toThrow(/not a mesh address/);
    await expect(makePingPeers(deps)(create(PingPeersRequestSchema, { addresses: ["10.100.1.2"], count: 21 }), ctx)).rejects.toThrow(/count/);
    await expect(makeTraceroute(deps)(create(TracerouteRequestSchema, { address: "10.100.1.2", maxHops: 0 }), ctx)).rejects.toThrow(/max_hops/);
    expect(calls).toEqual([]);
    const p = await makePingPeers(deps)(create(PingPeersRequestSchema, { addresses: ["10.100.1.2"], count: 4 }), ctx);
    expect(p.results).toHaveLength(1);
    const t = await makeTraceroute(deps)(create(TracerouteRequestSchema, { address: "10.100.1.2", maxHops: 30 }), ctx);
    expect(t.reached).toBe(true);
    expect(calls).toEqual([
      ["ping", "-n", "-q", "-c", "4", "-i", "0.2", "-W", "1", "-I", "plexd0", "10.100.1.2"],
      ["traceroute", "-n", "-q", "1", "-w", "1", "-m", "30", "-i", "plexd0", "10.100.1.2"],
    ]);
  });
});
