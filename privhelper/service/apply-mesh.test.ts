// ApplyMesh against recorded command transcripts: exactly which commands run, with which
// stdin, including a partial failure and its rollback.
import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ApplyMeshRequestSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { privConfigFrom } from "../config.js";
import { createLock } from "../lock.js";
import { AppliedSpecs } from "../mesh/base.js";
import { createLogger } from "../log.js";
import type { Host } from "../os/host.js";
import { ipTool } from "../os/ip.js";
import { TranscriptRunner, fail, ok, type TranscriptEntry } from "../os/runner.js";
import { wgTool } from "../os/wg.js";
import { makeApplyMesh } from "./apply-mesh.js";

const key = (n: number) => Buffer.alloc(32, n).toString("base64");
const [priv, pub, peerA, peerB] = [key(1), key(2), key(3), key(4)];
const ctx = { signal: new AbortController().signal, caller: "test" };

function addrJson(o: { mtu: number; up: boolean; addrs: [string, number][]; kind?: string }): string {
  return JSON.stringify([
    {
      ifname: "plexd0",
      flags: ["POINTOPOINT", "NOARP", ...(o.up ? ["UP", "LOWER_UP"] : [])],
      mtu: o.mtu,
      linkinfo: { info_kind: o.kind ?? "tun" },
      addr_info: o.addrs.map(([local, prefixlen]) => ({ family: local.includes(":") ? "inet6" : "inet", local, prefixlen, scope: "global" })),
    },
  ]);
}
const dumpLine = (p: string, ips: string) => `${p}\t(none)\t192.0.2.3:51820\t${ips}\t0\t0\t0\t25`;
const dump = (...peers: string[]) => [`${priv}\t${pub}\t51820\toff`, ...peers].join("\n") + "\n";

function fakeHost(state: { wgGo: number[] }): Host {
  return {
    exists: (p) => Promise.resolve(p === "/var/run/wireguard/plexd0.sock"),
    which: (n) => Promise.resolve(n === "wireguard-go" ? "/usr/bin/wireguard-go" : undefined),
    processes: () => Promise.resolve(state.wgGo.map((pid) => ({ pid, argv: ["/usr/bin/wireguard-go", "-f", "plexd0"] }))),
    netns: () => Promise.resolve("net:[4026531840]"),
    kill: (pid) => {
      state.wgGo = state.wgGo.filter((p) => p !== pid);
      return true;
    },
    sleep: () => Promise.resolve(),
  };
}

function engine(transcript: TranscriptEntry[], state = { wgGo: [] as number[] }) {
  const runner = new TranscriptRunner(transcript);
  const deps = {
    runner,
    host: fakeHost(state),
    ip: ipTool(runner),
    wgFor: () => Promise.resolve(wgTool(runner)),
    config: privConfigFrom({}),
    log: createLogger("silent"),
    lock: createLock(),
    applied: new AppliedSpecs(),
    logDir: "/tmp",
  };
  return { runner, apply: makeApplyMesh(deps) };
}

const peerSpecA = { publicKey: peerA, endpoint: "192.0.2.3:51820", allowedIps: ["10.100.0.3/32"], persistentKeepalive: 25 };
const request = (over: object = {}, peers: object[] = [peerSpecA]) =>
  create(ApplyMeshRequestSchema, { spec: { interface: "plexd0", privateKey: priv, listenPort: 51820, addresses: ["10.100.0.1/32"], mtu: 1420, peers, ...over } });

const showDev = ["ip", "-d", "-j", "addr", "show", "dev", "plexd0"];
const wgDump = ["wg", "show", "plexd0", "dump"];
/** The link read of every apply: one line to the long-lived `ip -batch`. */
const readBatch = ["ip", "-d", "-j", "-batch", "-"];
const readInput = "addr show dev plexd0\n";
/** /proc/net/route as the kernel prints it (little-endian host): header, then one row per route. */
const routeTable = (...routes: string[]): string =>
  "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
  routes
    .map((r) => {
      const [ip, len] = r.split("/");
      const hex = (o: number[]) => Buffer.from(o).readUInt32LE().toString(16).toUpperCase().padStart(8, "0");
      const bits = Number(len ?? 32);
      const mask = [0, 8, 16, 24].map((s) => Math.max(0, Math.min(8, bits - s))).map((b) => (0xff << (8 - b)) & 0xff);
      return `plexd0\t${hex(ip!.split(".").map(Number))}\t00000000\t0001\t0\t0\t0\t${hex(mask)}\t0\t0\t0`;
    })
    .map((l) => l.padEnd(127) + "\n")
    .join("");
/**
 * The device read of every apply: the link through `ip -batch`, beside it the WireGuard read
 * (next entry), and once the link is known its IPv4 routes from the kernel's table.
 */
const linkRead = (addr: string): TranscriptEntry => ({ cmd: readBatch, input: readInput, result: ok(`${addr}\n`) });
const routeRead = (...routes: string[]): TranscriptEntry => ({ cmd: ["read", "/proc/net/route"], result: ok(routeTable(...routes.map((r) => (r.includes("/") ? r : `${r}/32`)))) });
const readMissing: TranscriptEntry = { cmd: readBatch, input: readInput, result: fail('Device "plexd0" does not exist.', 1) };
/** The WireGuard read that runs beside the link read, here of a device that is not there. */
const wgMissing: TranscriptEntry = { cmd: wgDump, result: fail("Unable to access interface: No such device", 1) };

describe("ApplyMesh (transcripts)", () => {
  it("applies nothing when the device already matches: only reads run", async () => {
    const { runner, apply } = engine([
      linkRead(addrJson({ mtu: 1420, up: true, addrs: [["10.100.0.1", 32]] })),
      { cmd: wgDump, result: ok(dump(dumpLine(peerA, "10.100.0.3/32"))) },
      routeRead("10.100.0.3"),
    ]);
    const res = await apply(request(), ctx);
    expect(res.result).toEqual({ changed: false, plan: [] });
    expect(runner.done).toBe(true);
  });

  it("dry_run returns the plan and runs no mutation", async () => {
    const { runner, apply } = engine([
      linkRead(addrJson({ mtu: 1420, up: true, addrs: [["10.100.0.1", 32]] })),
      { cmd: wgDump, result: ok(dump(dumpLine(peerA, "10.100.0.3/32"))) },
      routeRead("10.100.0.3"),
    ]);
    const res = await apply(create(ApplyMeshRequestSchema, { ...request({}, [peerSpecA, { publicKey: peerB }]), dryRun: true }), ctx);
    expect(res.result?.changed).toBe(false);
    expect(res.result?.plan).toEqual([{ kind: "add_peer", detail: peerB }]);
    expect(runner.done).toBe(true);
  });

  it("rolls back to the previous device when a later step fails, naming the step", async () => {
    const before = addrJson({ mtu: 1420, up: true, addrs: [["10.100.0.1", 32]] });
    const { runner, apply } = engine([
      linkRead(before),
      { cmd: wgDump, result: ok(dump(dumpLine(peerA, "10.100.0.3/32"))) },
      routeRead("10.100.0.3"),
      // forward: mtu, one wg step with only the new peer, then the address fails
      { cmd: ["ip", "link", "set", "plexd0", "mtu", "1380"], result: ok() },
      {
        cmd: ["wg", "addconf", "plexd0", "/dev/stdin"],
        input: `[Interface]\n[Peer]\nPublicKey = ${peerB}\nPresharedKey = AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nAllowedIPs = 10.100.0.4/32\nPersistentKeepalive = off\n`,
        result: ok(),
      },
      { cmd: ["ip", "addr", "replace", "fd00::1/128", "dev", "plexd0"], result: fail("RTNETLINK answers: Permission denied", 2) },
      // rollback: read what is live now, then restore mtu and the exact previous peer set in one syncconf
      linkRead(addrJson({ mtu: 1380, up: true, addrs: [["10.100.0.1", 32]] })),
      { cmd: wgDump, result: ok(dump(dumpLine(peerA, "10.100.0.3/32"), dumpLine(peerB, "10.100.0.4/32"))) },
      routeRead("10.100.0.3"),
      { cmd: ["ip", "link", "set", "plexd0", "mtu", "1420"], result: ok() },
      {
        cmd: ["wg", "syncconf", "plexd0", "/dev/stdin"],
        input:
          `[Interface]\nPrivateKey = ${priv}\nListenPort = 51820\n[Peer]\nPublicKey = ${peerA}\nPresharedKey = AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n` +
          `Endpoint = 192.0.2.3:51820\nAllowedIPs = 10.100.0.3/32\nPersistentKeepalive = 25\n`,
        result: ok(),
      },
    ]);
    const res = await apply(request({ mtu: 1380, addresses: ["10.100.0.1/32", "fd00::1/128"] }, [peerSpecA, { publicKey: peerB, allowedIps: ["10.100.0.4/32"] }]), ctx);
    expect(runner.done).toBe(true);
    expect(res.result).toMatchObject({ changed: false, failedStep: "add_address fd00::1/128", rolledBack: true });
    expect(res.result?.error).toContain("Permission denied");
    // keys travelled on stdin only
    for (const e of runner.ran) expect(e.cmd.join(" ")).not.toContain(priv);
  });

  it("peers and routes change side by side; a failed peer step takes the new route back out", async () => {
    const up = addrJson({ mtu: 1420, up: true, addrs: [["10.100.0.1", 32]] });
    const { runner, apply } = engine([
      linkRead(up),
      { cmd: wgDump, result: ok(dump(dumpLine(peerA, "10.100.0.3/32"))) },
      routeRead("10.100.0.3"),
      // forward, concurrently: the route for peer B, and peer B itself (which fails)
      { cmd: readBatch, input: "route replace 10.100.0.4/32 dev plexd0\n", result: ok() },
      { cmd: ["wg", "addconf", "plexd0", "/dev/stdin"], result: fail("Unable to modify interface: Invalid argument", 1) },
      // rollback: the peers are as before, the route is not
      linkRead(up),
      { cmd: wgDump, result: ok(dump(dumpLine(peerA, "10.100.0.3/32"))) },
      routeRead("10.100.0.3", "10.100.0.4"),
      { cmd: readBatch, input: "route del 10.100.0.4/32 dev plexd0\n", result: ok() },
    ]);
    const res = await apply(request({}, [peerSpecA, { publicKey: peerB, allowedIps: ["10.100.0.4/32"] }]), ctx);
    expect(runner.done).toBe(true);
    expect(res.result).toMatchObject({ changed: false, failedStep: "set_wireguard", rolledBack: true });
  });

  it("creates a wireguard-go device when the kernel has none, and removes it again when the apply fails", async () => {
    const state = { wgGo: [] as number[] };
    const transcript: TranscriptEntry[] = [
      readMissing,
      wgMissing,
      { cmd: ["ip", "link", "add", "plexd0", "type", "wireguard"], result: fail("Error: Unknown device type.", 2) },
      { cmd: ["spawn", "/usr/bin/wireguard-go", "-f", "plexd0"], result: ok("31337") },
      { cmd: showDev, result: ok(addrJson({ mtu: 1420, up: false, addrs: [] })) },
      { cmd: ["wg", "addconf", "plexd0", "/dev/stdin"], result: fail("Unable to modify interface: Protocol not supported", 1) },
      // rollback of a created device = remove it (SIGTERM to wireguard-go, which drops the link)
      { cmd: showDev, result: fail('Device "plexd0" does not exist.', 1) },
    ];
    const { runner, apply } = engine(transcript, state);
    const spawn = runner.spawnDetached.bind(runner);
    runner.spawnDetached = (f, a, l) => {
      const pid = spawn(f, a, l);
      state.wgGo.push(pid);
      return pid;
    };
    const res = await apply(request({ mtu: 0 }), ctx);
    expect(runner.done).toBe(true);
    expect(res.result).toMatchObject({ failedStep: "set_wireguard", rolledBack: true, changed: false });
    expect(res.result?.plan?.[0]).toEqual({ kind: "create_interface", detail: "plexd0" });
    expect(state.wgGo).toEqual([]);
  });

  it("uses kernel WireGuard when the kernel has it: no wireguard-go, config through wg on stdin", async () => {
    const { runner, apply } = engine([
      readMissing,
      wgMissing,
      { cmd: ["ip", "link", "add", "plexd0", "type", "wireguard"], result: ok() },
      { cmd: ["ip", "link", "set", "plexd0", "mtu", "1420"], result: ok() },
      {
        cmd: ["wg", "addconf", "plexd0", "/dev/stdin"],
        input:
          `[Interface]\nPrivateKey = ${priv}\nListenPort = 51820\n[Peer]\nPublicKey = ${peerA}\nPresharedKey = AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n` +
          `Endpoint = 192.0.2.3:51820\nAllowedIPs = 10.100.0.3/32\nPersistentKeepalive = 25\n`,
        result: ok(),
      },
      { cmd: ["ip", "addr", "replace", "10.100.0.1/32", "dev", "plexd0"], result: ok() },
      { cmd: ["ip", "link", "set", "plexd0", "up"], result: ok() },
      { cmd: readBatch, input: "route replace 10.100.0.3/32 dev plexd0\n", result: ok() },
    ]);
    const res = await apply(request(), ctx);
    expect(runner.done).toBe(true);
    expect(res.result?.changed).toBe(true);
    expect(res.result?.plan?.map((s) => s.kind)).toEqual(["create_interface", "set_mtu", "set_private_key", "set_listen_port", "add_peer", "add_address", "link_up", "add_route"]);
  });

  it("a delta on the last applied generation means that peer set, changed, and is diffed against the device", async () => {
    const up = addrJson({ mtu: 1420, up: true, addrs: [["10.100.0.1", 32]] });
    const { runner, apply } = engine([
      // generation 7: peers A and B, already live
      linkRead(up),
      { cmd: wgDump, result: ok(dump(dumpLine(peerA, "10.100.0.3/32"), dumpLine(peerB, "10.100.0.4/32"))) },
      routeRead("10.100.0.3", "10.100.0.4"),
      // generation 8 = 7 without B: only B goes, A is untouched
      linkRead(up),
      { cmd: wgDump, result: ok(dump(dumpLine(peerA, "10.100.0.3/32"), dumpLine(peerB, "10.100.0.4/32"))) },
      routeRead("10.100.0.3", "10.100.0.4"),
      { cmd: readBatch, input: "route del 10.100.0.4/32 dev plexd0\n", result: ok() },
      { cmd: ["wg", "syncconf", "plexd0", "/dev/stdin"], result: ok() },
    ]);
    const peerSpecB = { publicKey: peerB, endpoint: "192.0.2.3:51820", allowedIps: ["10.100.0.4/32"], persistentKeepalive: 25 };
    const full = await apply(create(ApplyMeshRequestSchema, { ...request({}, [peerSpecA, peerSpecB]), generation: 7n }), ctx);
    expect(full.result).toEqual({ changed: false, plan: [] });
    const delta = await apply(create(ApplyMeshRequestSchema, { ...request({}, []), generation: 8n, baseGeneration: 7n, removedPeerKeys: [peerB] }), ctx);
    expect(delta.result?.plan?.map((s) => s.kind).sort()).toEqual(["remove_peer", "remove_route"]);
    expect(runner.done).toBe(true);
  });

  it("a delta on a generation it does not hold, or with a bad key, is refused having only read", async () => {
    // The device read leaves before the request is resolved (it overlaps wireguard-go's answer);
    // a refused request has run those reads to their end and nothing else.
    const { runner, apply } = engine([readMissing, wgMissing, readMissing, wgMissing, readMissing, wgMissing]);
    await expect(apply(create(ApplyMeshRequestSchema, { ...request(), generation: 2n, baseGeneration: 1n }), ctx)).rejects.toMatchObject({ code: "failed_precondition" });
    await expect(apply(create(ApplyMeshRequestSchema, { ...request(), generation: 2n, baseGeneration: 1n, removedPeerKeys: ["eth0; rm -rf /"] }), ctx)).rejects.toMatchObject({ code: "invalid_argument" });
    await expect(apply(create(ApplyMeshRequestSchema, { ...request(), removedPeerKeys: [peerB] }), ctx)).rejects.toMatchObject({ code: "invalid_argument" });
    expect(runner.done).toBe(true);
    expect(runner.ran.map((e) => e.cmd.join(" "))).toEqual(Array.from({ length: 3 }, () => [readBatch.join(" "), wgDump.join(" ")]).flat());
  });

  it("a failed apply forgets the base: the next delta is refused", async () => {
    const up = addrJson({ mtu: 1420, up: true, addrs: [["10.100.0.1", 32]] });
    const { apply } = engine([
      linkRead(up),
      { cmd: wgDump, result: ok(dump(dumpLine(peerA, "10.100.0.3/32"))) },
      routeRead("10.100.0.3"),
      linkRead(up),
      { cmd: wgDump, result: ok(dump()) },
      routeRead(),
      { cmd: ["wg", "addconf", "plexd0", "/dev/stdin"], result: fail("Unable to modify interface", 1) },
      { cmd: readBatch, input: "route replace 10.100.0.3/32 dev plexd0\n", result: ok() },
      // rollback to the empty device
      linkRead(up),
      { cmd: wgDump, result: ok(dump()) },
      routeRead("10.100.0.3"),
      { cmd: readBatch, input: "route del 10.100.0.3/32 dev plexd0\n", result: ok() },
    ]);
    await apply(create(ApplyMeshRequestSchema, { ...request(), generation: 1n }), ctx);
    const failed = await apply(create(ApplyMeshRequestSchema, { ...request(), generation: 2n }), ctx);
    expect(failed.result?.rolledBack).toBe(true);
    await expect(apply(create(ApplyMeshRequestSchema, { ...request({}, []), generation: 3n, baseGeneration: 2n }), ctx)).rejects.toMatchObject({ code: "failed_precondition" });
  });

  it("refuses an invalid spec: a name off the allow-list is not even read, a bad peer changes nothing", async () => {
    const { runner, apply } = engine([linkRead(addrJson({ mtu: 1420, up: true, addrs: [["10.100.0.1", 32]] })), { cmd: wgDump, result: ok(dump()) }, routeRead()]);
    await expect(apply(request({ interface: "eth0" }), ctx)).rejects.toMatchObject({ code: "invalid_argument" });
    expect(runner.ran).toEqual([]);
    await expect(apply(request({}, [{ ...peerSpecA, allowedIps: ["10.100.0.3/33"] }]), ctx)).rejects.toMatchObject({ code: "invalid_argument" });
    expect(runner.done).toBe(true);
    expect(runner.ran.map((e) => e.cmd[0])).toEqual(["ip", "wg", "read"]);
    expect(runner.ran[0]?.input).toBe("addr show dev plexd0\n");
  });

  it("leaves the kernel's prefix route of its own address alone, and does not add it for a peer that routes it", async () => {
    // 10.100.0.1/24 gives the kernel 10.100.0.0/24 via plexd0; a bridge peer may claim it too.
    const up = addrJson({ mtu: 1420, up: true, addrs: [["10.100.0.1", 24]] });
    const bridge = { publicKey: peerB, endpoint: "192.0.2.4:51820", allowedIps: ["10.100.0.0/24"], persistentKeepalive: 25 };
    const { runner, apply } = engine([
      linkRead(up),
      { cmd: wgDump, result: ok(dump(dumpLine(peerA, "10.100.0.3/32"), `${peerB}\t(none)\t192.0.2.4:51820\t10.100.0.0/24\t0\t0\t0\t25`)) },
      routeRead("10.100.0.0/24", "10.100.0.3", "10.100.0.9"),
      { cmd: readBatch, input: "route del 10.100.0.9/32 dev plexd0\n", result: ok() },
    ]);
    const res = await apply(request({ addresses: ["10.100.0.1/24"] }, [peerSpecA, bridge]), ctx);
    expect(res.result).toEqual({ changed: true, plan: [{ kind: "remove_route", detail: "10.100.0.9/32" }] });
    expect(runner.done).toBe(true);
  });
});
