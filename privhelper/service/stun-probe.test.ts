import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApplyMeshRequestSchema, StunProbeRequestSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import { FakeHost, captureLog, dump, ipRead, key, until, wgShow } from "../../test/support/privhelper.js";
import { TranscriptRunner, fail, ok, type TranscriptEntry } from "../../test/support/transcript.js";
import { privConfigFrom } from "../config.js";
import { buildHandlers, createLock } from "../handlers.js";
import { renderStunSnat, type UdpExchangeOptions } from "../os/stun.js";
import type { WgLiveDevice } from "../os/wg.js";
import { makeStunProbe, probePorts, validateStunProbe } from "./stun-probe.js";

const cookie = Buffer.from([0x21, 0x12, 0xa4, 0x42]);
const binding = Buffer.concat([Buffer.from([0, 1, 0, 0]), cookie, Buffer.alloc(12, 7)]);
const ctx = (signal = new AbortController().signal) => ({ signal, uid: 1001, pid: 4242 });
const req = (over: Partial<{ ip: string; port: number; request: Uint8Array; timeoutMs: number }> = {}) => create(StunProbeRequestSchema, { ip: "192.0.2.1", port: 3478, request: binding, timeoutMs: 2000, ...over });

describe("validateStunProbe", () => {
  it("accepts a Binding request to a unicast IPv4 server; 0 ms means the default timeout", () => {
    expect(validateStunProbe(req())).toMatchObject({ ip: "192.0.2.1", port: 3478, timeoutMs: 2000 });
    expect(validateStunProbe(req({ timeoutMs: 0 })).timeoutMs).toBe(5000);
    const withAttr = Buffer.concat([Buffer.from([0, 1, 0, 8]), cookie, Buffer.alloc(12), Buffer.from([0x80, 0x22, 0, 4, 0x61, 0x62, 0x63, 0x64])]);
    expect(validateStunProbe(req({ request: withAttr })).request.length).toBe(28);
    const max = Buffer.concat([Buffer.from([0, 1, 0x02, 0x10]), cookie, Buffer.alloc(540)]);
    expect(validateStunProbe(req({ request: max })).request.length).toBe(548);
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
    let err: unknown;
    try {
      validateStunProbe(req(over));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PlexdError);
    expect((err as PlexdError).code).toBe("invalid_argument");
    expect((err as PlexdError).message).toContain(text);
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
    for (let mesh = 61000; mesh < 61100; mesh++) expect(probePorts("192.0.2.1", 3478, mesh)).not.toContain(mesh);
  });
});

/** A UDP exchange that answers like a server seeing the datagram after SNAT (if any). */
function fakeUdp(opts: { busy?: number[]; silentUnlessPlain?: boolean; silent?: boolean } = {}) {
  const calls: { bindPort: number | undefined; snat: boolean; signal: boolean }[] = [];
  const udp = async (o: UdpExchangeOptions) => {
    if (o.bindPort !== undefined && opts.busy?.includes(o.bindPort)) {
      calls.push({ bindPort: o.bindPort, snat: false, signal: o.signal !== undefined });
      throw new PlexdError("already_exists", "in use");
    }
    const local = { address: "198.18.1.2", port: o.bindPort || 40000 };
    let snat = false;
    if (o.beforeSend) {
      await o.beforeSend(local);
      snat = true;
    }
    calls.push({ bindPort: o.bindPort, snat, signal: o.signal !== undefined });
    o.signal?.throwIfAborted();
    if (opts.silent || (opts.silentUnlessPlain && snat)) throw new PlexdError("deadline_exceeded", "no answer");
    return { reply: Buffer.from(`reply from ${o.ip}`), localPort: local.port };
  };
  return { udp, calls };
}

const device = (listenPort: number): WgLiveDevice => ({ privateKey: "", publicKey: "", listenPort, peers: [] });
const config = privConfigFrom({ mesh: { interface: "plexd0" } });
const nftHost = { which: (n: string) => Promise.resolve(n === "nft" ? "/usr/sbin/nft" : undefined) };
const stunTableGone = "table ip plexd_stun\ndelete table ip plexd_stun\n";

const snatEntry = (localPort: number, extra: Partial<TranscriptEntry> = {}): TranscriptEntry => ({
  cmd: ["nft", "-f", "-"],
  input: renderStunSnat({ localIp: "198.18.1.2", localPort, server: "192.0.2.1", serverPort: 3478, meshPort: 51820 }),
  result: ok(),
  ...extra,
});
const removeEntry: TranscriptEntry = { cmd: ["nft", "-f", "-"], input: stunTableGone, result: ok() };

function probeWith(transcript: TranscriptEntry[], udp: ReturnType<typeof fakeUdp>["udp"], over: Partial<Parameters<typeof makeStunProbe>[0]> = {}) {
  const runner = new TranscriptRunner(transcript);
  const { log, lines } = captureLog();
  const probe = makeStunProbe({ runner, host: nftHost, config, log, wgFor: () => Promise.resolve({ show: () => Promise.resolve(device(51820)) }), udp, lock: createLock(), ...over });
  return { runner, lines, probe };
}

describe("StunProbe", () => {
  it("SNATs its own socket to the WireGuard port for exactly this server, removes the table, reports from_mesh_port", async () => {
    const [p0] = probePorts("192.0.2.1", 3478, 51820);
    const script = [
      "table ip plexd_stun",
      "delete table ip plexd_stun",
      "table ip plexd_stun {",
      "  chain postrouting {",
      "    type nat hook postrouting priority srcnat; policy accept;",
      `    ip saddr 198.18.1.2 ip daddr 192.0.2.1 udp sport ${p0} udp dport 3478 snat to 198.18.1.2:51820`,
      "  }",
      "}",
      "",
    ].join("\n");
    const { udp, calls } = fakeUdp();
    const { runner, probe } = probeWith([{ cmd: ["nft", "-f", "-"], input: script, result: ok() }, removeEntry], udp);
    expect(await probe(req(), ctx())).toEqual({ reply: Buffer.from("reply from 192.0.2.1"), sourcePort: 51820, fromMeshPort: true });
    expect(calls).toEqual([{ bindPort: p0, snat: true, signal: true }]);
    expect(runner.done).toBe(true);
    // The SNAT is a mutation: installed and removed without the caller's signal.
    expect(runner.ran.every((r) => !r.signal)).toBe(true);
  });

  it("moves to the next stable port when one is taken, then to an ephemeral one", async () => {
    const ports = probePorts("192.0.2.1", 3478, 51820);
    const { udp, calls } = fakeUdp({ busy: ports });
    const { runner, probe } = probeWith([snatEntry(40000), removeEntry], udp);
    expect(await probe(req(), ctx())).toMatchObject({ sourcePort: 51820, fromMeshPort: true });
    expect(calls.map((c) => c.bindPort)).toEqual([...ports, 0]);
    expect(runner.done).toBe(true);
  });

  it("falls back to a plain ephemeral probe when nft refuses the rule, and still removes the table", async () => {
    const [p0] = probePorts("192.0.2.1", 3478, 51820);
    const { udp, calls } = fakeUdp();
    const { runner, probe } = probeWith([snatEntry(p0!, { result: fail("Error: Could not process rule: No such file or directory\n") }), removeEntry], udp);
    expect(await probe(req(), ctx())).toEqual({ reply: Buffer.from("reply from 192.0.2.1"), sourcePort: 40000, fromMeshPort: false });
    expect(calls.at(-1)).toEqual({ bindPort: undefined, snat: false, signal: true });
    expect(runner.done).toBe(true);
  });

  it("falls back when the SNAT'd probe gets no answer", async () => {
    const [p0] = probePorts("192.0.2.1", 3478, 51820);
    const { udp } = fakeUdp({ silentUnlessPlain: true });
    const { runner, probe } = probeWith([snatEntry(p0!), removeEntry], udp);
    expect(await probe(req(), ctx())).toMatchObject({ fromMeshPort: false, sourcePort: 40000 });
    expect(runner.done).toBe(true);
  });

  it("a table that cannot be removed is logged, not fatal", async () => {
    const [p0] = probePorts("192.0.2.1", 3478, 51820);
    const { udp } = fakeUdp();
    const { probe, lines } = probeWith([snatEntry(p0!), { ...removeEntry, result: fail("Error: busy\n") }], udp);
    expect((await probe(req(), ctx())).fromMeshPort).toBe(true);
    expect(lines.find((l) => l.msg === "could not remove table ip plexd_stun")).toMatchObject({ level: 40 });
  });

  it("without a WireGuard device, with a device without a port, or without nft: ephemeral port, no nft call at all", async () => {
    for (const over of [
      { wgFor: () => Promise.resolve({ show: () => Promise.resolve(undefined) }) },
      { wgFor: () => Promise.resolve({ show: () => Promise.reject(new Error("no such device")) }) },
      { wgFor: () => Promise.resolve({ show: () => Promise.resolve(device(0)) }) },
      { host: { which: () => Promise.resolve(undefined) } },
    ]) {
      const { udp } = fakeUdp();
      const { runner, probe } = probeWith([], udp, over);
      expect(await probe(req(), ctx())).toMatchObject({ fromMeshPort: false, sourcePort: 40000 });
      expect(runner.ran).toEqual([]);
    }
  });

  it("no answer at all is deadline_exceeded; invalid requests never reach the network", async () => {
    const [p0] = probePorts("192.0.2.1", 3478, 51820);
    const { udp, calls } = fakeUdp({ silent: true });
    const { probe } = probeWith([snatEntry(p0!), removeEntry], udp);
    await expect(probe(req(), ctx())).rejects.toMatchObject({ code: "deadline_exceeded" });
    const before = calls.length;
    expect(() => probe(req({ request: Buffer.from("hello") }), ctx())).toThrow(PlexdError);
    expect(calls.length).toBe(before);
  });

  it("a cancelled probe ends cancelled (no second try from an ephemeral port), and its table is removed", async () => {
    const ac = new AbortController();
    const [p0] = probePorts("192.0.2.1", 3478, 51820);
    const { udp, calls } = fakeUdp();
    const { runner, probe } = probeWith([snatEntry(p0!, { effect: () => ac.abort(new PlexdError("cancelled", "call cancelled")) }), removeEntry], udp);
    await expect(probe(req(), ctx(ac.signal))).rejects.toMatchObject({ code: "cancelled" });
    expect(calls).toHaveLength(1);
    expect(runner.done).toBe(true);
  });

  it("probes are serialised on their lock: each owns table ip plexd_stun while it runs", async () => {
    const [p0] = probePorts("192.0.2.1", 3478, 51820);
    let release = (): void => undefined;
    const held = new Promise<void>((r) => (release = r));
    const { udp, calls } = fakeUdp();
    const { runner, probe } = probeWith([snatEntry(p0!, { effect: () => held }), removeEntry, snatEntry(p0!), removeEntry], udp);
    const first = probe(req(), ctx());
    const second = probe(req(), ctx());
    await until(() => runner.commands.length >= 1);
    await new Promise((r) => setTimeout(r, 20));
    expect(runner.commands).toHaveLength(1);
    release();
    await Promise.all([first, second]);
    expect(calls).toHaveLength(2);
    expect(runner.done).toBe(true);
  });
});

describe("StunProbe in the handler table", () => {
  let dir: string;
  let server: UdpSocket;
  let port = 0;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "plexd-stun-"));
    server = createSocket("udp4");
    server.on("message", (msg, rinfo) => server.send(Buffer.concat([Buffer.from("answer:"), msg]), rinfo.port, rinfo.address));
    await new Promise<void>((r) => server.bind(0, "127.0.0.1", r));
    port = server.address().port;
  });
  afterAll(async () => {
    server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("does not queue behind an ApplyMesh in flight (its own lock, not the mesh lock)", async () => {
    let release = (): void => undefined;
    const held = new Promise<void>((r) => (release = r));
    const [priv, pub] = [key(1), key(2)];
    const runner = new TranscriptRunner([
      ipRead("plexd0", { up: true, mtu: 1420, addrs: ["10.100.0.1/32"] }, [], { effect: () => held }),
      wgShow("plexd0", dump({ privateKey: priv, publicKey: pub, listenPort: 51820, peers: [] })),
      // the probe's look at the device: none yet, so an ephemeral port and no nft
      wgShow("plexd0", undefined),
    ]);
    const handlers = buildHandlers({ runner, host: new FakeHost(), config, log: captureLog().log, startedAtMs: 0, runDir: dir });
    const apply = handlers.applyMesh(create(ApplyMeshRequestSchema, { spec: { interface: "plexd0", privateKey: priv, listenPort: 51820, addresses: ["10.100.0.1/32"], mtu: 1420 } }), ctx());
    let applied = false;
    void apply.then(() => (applied = true));
    const waited = new Promise<never>((_r, reject) => setTimeout(() => reject(new Error("StunProbe waited for the ApplyMesh in flight")), 5_000).unref());
    const res = await Promise.race([handlers.stunProbe(req({ ip: "127.0.0.1", port }), ctx()), waited]);
    expect(applied).toBe(false);
    expect(res.fromMeshPort).toBe(false);
    expect(Buffer.from(res.reply ?? []).subarray(0, 7).toString()).toBe("answer:");
    expect(res.sourcePort).toBeGreaterThan(0);
    release();
    expect((await apply).result).toEqual({ changed: false, plan: [] });
    expect(runner.done).toBe(true);
  });
});
