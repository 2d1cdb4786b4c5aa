import { describe, expect, it } from "vitest";
import { PlexdError } from "../../proto/lib/errors.js";
import { privConfigFrom } from "../config.js";
import { createLogger } from "../log.js";
import { TranscriptRunner, fail, ok, type TranscriptEntry } from "../os/runner.js";
import { removeStunSnatScript, renderStunSnat } from "../os/stun-nat.js";
import type { UdpExchangeOptions, UdpExchangeResult } from "../os/stun-socket.js";
import type { WgLiveDevice } from "../os/wg.js";
import { makeStunProbe, probePorts, validateStunProbe } from "./stun-probe.js";

const cookie = Buffer.from([0x21, 0x12, 0xa4, 0x42]);
const binding = Buffer.concat([Buffer.from([0, 1, 0, 0]), cookie, Buffer.alloc(12, 7)]);
const ctx = () => ({ signal: new AbortController().signal, caller: "test" });
const req = (over: Partial<{ ip: string; port: number; request: Uint8Array; timeoutMs: number }> = {}) =>
  ({ $typeName: "plexd.priv.v1.StunProbeRequest", ip: "192.0.2.1", port: 3478, request: binding, timeoutMs: 2000, ...over }) as const;

describe("validateStunProbe", () => {
  it("accepts a Binding request to a unicast IPv4 server; 0 ms means the default timeout", () => {
    expect(validateStunProbe(req())).toMatchObject({ ip: "192.0.2.1", port: 3478, timeoutMs: 2000 });
    expect(validateStunProbe(req({ timeoutMs: 0 })).timeoutMs).toBe(5000);
    const withAttr = Buffer.concat([Buffer.from([0, 1, 0, 8]), cookie, Buffer.alloc(12), Buffer.from([0x80, 0x22, 0, 4, 0x61, 0x62, 0x63, 0x64])]);
    expect(validateStunProbe(req({ request: withAttr })).request.length).toBe(28);
  });

  const bad: [string, Parameters<typeof req>[0], string][] = [
    ["IPv6", { ip: "::1" }, "ip"],
    ["hostname", { ip: "stun.example" }, "ip"],
    ["leading zero", { ip: "192.0.2.01" }, "ip"],
    ["multicast", { ip: "224.0.0.1" }, "unicast"],
    ["broadcast", { ip: "255.255.255.255" }, "unicast"],
    ["this network", { ip: "0.0.0.0" }, "unicast"],
    ["port 0", { port: 0 }, "port"],
    ["port 65536", { port: 65536 }, "port"],
    ["short datagram", { request: binding.subarray(0, 19) }, "request"],
    ["549 bytes", { request: Buffer.concat([Buffer.from([0, 1, 0x02, 0x11]), cookie, Buffer.alloc(541)]) }, "request"],
    ["not a Binding request", { request: Buffer.concat([Buffer.from([1, 1, 0, 0]), cookie, Buffer.alloc(12)]) }, "Binding"],
    ["arbitrary payload", { request: Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n") }, "request"],
    ["no cookie", { request: Buffer.concat([Buffer.from([0, 1, 0, 0]), Buffer.alloc(16)]) }, "cookie"],
    ["length field lies", { request: Buffer.concat([Buffer.from([0, 1, 0, 4]), cookie, Buffer.alloc(12)]) }, "length field"],
    ["timeout over 10 s", { timeoutMs: 10_001 }, "timeout_ms"],
  ];
  it.each(bad)("refuses %s", (_n, over, text) => {
    try {
      validateStunProbe(req(over));
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(PlexdError);
      expect((err as PlexdError).code).toBe("invalid_argument");
      expect((err as PlexdError).message).toContain(text);
    }
  });
});

describe("probePorts", () => {
  it("is stable per server and mesh port, distinct, above the kernel's ephemeral range, never the mesh port", () => {
    const a = probePorts("192.0.2.1", 3478, 51820);
    expect(a).toEqual(probePorts("192.0.2.1", 3478, 51820));
    expect(new Set(a).size).toBe(3);
    expect(a.every((p) => p >= 61000 && p <= 65535 && p !== 51820)).toBe(true);
    expect(probePorts("192.0.2.2", 3478, 51820)).not.toEqual(a);
    expect(probePorts("192.0.2.1", 3478, 51821)).not.toEqual(a);
  });
});

/** A UDP exchange that answers like a server seeing the datagram after SNAT (if any). */
function fakeUdp(opts: { busy?: number[]; silentUnlessPlain?: boolean; silent?: boolean }) {
  const calls: { bindPort: number | undefined; snat: boolean }[] = [];
  const udp = async (o: UdpExchangeOptions): Promise<UdpExchangeResult> => {
    if (o.bindPort !== undefined && opts.busy?.includes(o.bindPort)) {
      calls.push({ bindPort: o.bindPort, snat: false });
      throw new PlexdError("already_exists", "in use");
    }
    const local = { address: "198.18.1.2", port: o.bindPort || 40000 };
    let snat = false;
    if (o.beforeSend) {
      await o.beforeSend(local);
      snat = true;
    }
    calls.push({ bindPort: o.bindPort, snat });
    if (opts.silent || (opts.silentUnlessPlain && snat)) throw new PlexdError("deadline_exceeded", "no answer");
    return { reply: Buffer.from(`reply from ${o.ip}`), local };
  };
  return { udp, calls };
}

const device = (listenPort: number): WgLiveDevice => ({ privateKey: "", publicKey: "", listenPort, peers: [] });
const config = privConfigFrom({ mesh: { interface: "plexd0" } });
const log = createLogger("silent");

function snatEntry(localPort: number): TranscriptEntry {
  return { cmd: ["nft", "-f", "-"], input: renderStunSnat({ localIp: "198.18.1.2", localPort, server: "192.0.2.1", serverPort: 3478, meshPort: 51820 }), result: ok() };
}
const removeEntry: TranscriptEntry = { cmd: ["nft", "-f", "-"], input: removeStunSnatScript, result: ok() };

describe("makeStunProbe (transcript)", () => {
  it("SNATs its own socket to the WireGuard port, removes the table, reports from_mesh_port", async () => {
    const [p0] = probePorts("192.0.2.1", 3478, 51820);
    const runner = new TranscriptRunner([snatEntry(p0!), removeEntry]);
    const { udp, calls } = fakeUdp({});
    const probe = makeStunProbe({ runner, host: { which: async () => "/usr/sbin/nft" }, config, log, wgFor: async () => ({ show: async () => device(51820) }), udp });
    const res = await probe(req(), ctx());
    expect(res).toEqual({ reply: Buffer.from("reply from 192.0.2.1"), sourcePort: 51820, fromMeshPort: true });
    expect(calls).toEqual([{ bindPort: p0, snat: true }]);
    expect(runner.done).toBe(true);
  });

  it("moves to the next stable port when one is taken, then to an ephemeral one", async () => {
    const ports = probePorts("192.0.2.1", 3478, 51820);
    const runner = new TranscriptRunner([snatEntry(40000), removeEntry]);
    const { udp, calls } = fakeUdp({ busy: ports });
    const probe = makeStunProbe({ runner, host: { which: async () => "/usr/sbin/nft" }, config, log, wgFor: async () => ({ show: async () => device(51820) }), udp });
    expect((await probe(req(), ctx())).fromMeshPort).toBe(true);
    expect(calls.map((c) => c.bindPort)).toEqual([...ports, 0]);
  });

  it("falls back to a plain ephemeral probe when nft refuses the rule (table still cleaned up)", async () => {
    const [p0] = probePorts("192.0.2.1", 3478, 51820);
    const runner = new TranscriptRunner([{ ...snatEntry(p0!), result: fail("Error: Could not process rule: No such file or directory") }, removeEntry]);
    const { udp, calls } = fakeUdp({});
    const probe = makeStunProbe({ runner, host: { which: async () => "/usr/sbin/nft" }, config, log, wgFor: async () => ({ show: async () => device(51820) }), udp });
    expect(await probe(req(), ctx())).toEqual({ reply: Buffer.from("reply from 192.0.2.1"), sourcePort: 40000, fromMeshPort: false });
    expect(calls.at(-1)).toEqual({ bindPort: undefined, snat: false });
    expect(runner.done).toBe(true);
  });

  it("falls back when the SNAT'd probe gets no answer", async () => {
    const [p0] = probePorts("192.0.2.1", 3478, 51820);
    const runner = new TranscriptRunner([snatEntry(p0!), removeEntry]);
    const { udp } = fakeUdp({ silentUnlessPlain: true });
    const probe = makeStunProbe({ runner, host: { which: async () => "/usr/sbin/nft" }, config, log, wgFor: async () => ({ show: async () => device(51820) }), udp });
    expect((await probe(req(), ctx())).fromMeshPort).toBe(false);
  });

  it("without a WireGuard device or without nft: ephemeral port, no nft call at all", async () => {
    for (const deps of [
      { host: { which: async () => "/usr/sbin/nft" }, wgFor: async () => ({ show: async () => undefined }) },
      { host: { which: async () => "/usr/sbin/nft" }, wgFor: async () => ({ show: () => Promise.reject(new Error("no such device")) }) },
      { host: { which: async () => undefined }, wgFor: async () => ({ show: async () => device(51820) }) },
    ]) {
      const runner = new TranscriptRunner([]);
      const { udp } = fakeUdp({});
      const res = await makeStunProbe({ runner, config, log, udp, ...deps })(req(), ctx());
      expect(res.fromMeshPort).toBe(false);
      expect(runner.done).toBe(true);
    }
  });

  it("no answer at all is deadline_exceeded; invalid requests never reach the network", async () => {
    const [p0] = probePorts("192.0.2.1", 3478, 51820);
    const runner = new TranscriptRunner([snatEntry(p0!), removeEntry]);
    const { udp, calls } = fakeUdp({ silent: true });
    const probe = makeStunProbe({ runner, host: { which: async () => "/usr/sbin/nft" }, config, log, wgFor: async () => ({ show: async () => device(51820) }), udp });
    await expect(probe(req(), ctx())).rejects.toMatchObject({ code: "deadline_exceeded" });
    const before = calls.length;
    expect(() => probe(req({ request: Buffer.from("hello") }), ctx())).toThrow(PlexdError);
    expect(calls.length).toBe(before);
  });
});
