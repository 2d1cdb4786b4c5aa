// ApplyMesh against recorded command transcripts: exactly which commands run, in which order,
// with which stdin — the crash-safe order of its steps, the routes it owns and the ones it
// leaves alone, deltas, cancellation, and a failure at each stage with its rollback. Kernel
// devices are written through wgTool's real FIFO in a temp dir; wireguard-go devices through
// a UAPI stand-in on a temp socket.
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ApplyMeshRequestSchema, type WireGuardPeerSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import { FakeHost, captureLog, dump, ipBatch, ipExact, ipRead, key, until, wgConf, wgShow, type DumpPeer, type LinkState, type RouteRow } from "../../test/support/privhelper.js";
import { TranscriptRunner, fail, ok, type TranscriptEntry } from "../../test/support/transcript.js";
import { privConfigFrom } from "../config.js";
import { createLock, meshDeps } from "../handlers.js";
import { uapiSocket } from "../mesh/device.js";
import { ipTool } from "../os/ip.js";
import { renderSet, uapiBackend } from "../os/uapi.js";
import { renderConfig, wgTool, type WgPeer } from "../os/wg.js";
import { makeApplyMesh, type MeshDeps } from "./apply-mesh.js";

const [priv, pub, a, b, psk, c, z] = [key(1), key(2), key(3), key(4), key(5), key(6), key(26)];
const ctx = (signal = new AbortController().signal) => ({ signal, uid: 1001, pid: 4242 });

// One peer in its three spellings: as the agent sends it, as privhelper renders it, as `wg show dump` prints it.
const specA = { publicKey: a, endpoint: "192.0.2.3:51820", allowedIps: ["10.100.0.3/32"], persistentKeepalive: 25 };
const wgA: WgPeer = { publicKey: a, presharedKey: "", endpoint: "192.0.2.3:51820", allowedIps: ["10.100.0.3/32"], keepalive: 25 };
const dumpA: DumpPeer = { publicKey: a, endpoint: "192.0.2.3:51820", allowedIps: ["10.100.0.3/32"], keepalive: 25 };
const specB = { publicKey: b, presharedKey: psk, allowedIps: ["10.100.0.4/32"] };
const wgB: WgPeer = { publicKey: b, presharedKey: psk, endpoint: "", allowedIps: ["10.100.0.4/32"], keepalive: 0 };
const dumpB: DumpPeer = { publicKey: b, psk, allowedIps: ["10.100.0.4/32"] };
const specC = { publicKey: c, allowedIps: ["10.100.0.6/32"] };
const wgC: WgPeer = { publicKey: c, presharedKey: "", endpoint: "", allowedIps: ["10.100.0.6/32"], keepalive: 0 };
const dumpZ: DumpPeer = { publicKey: z, endpoint: "192.0.2.26:51820", allowedIps: ["10.100.0.26/32"], keepalive: 25 };
const wgZ: WgPeer = { publicKey: z, presharedKey: "", endpoint: "192.0.2.26:51820", allowedIps: ["10.100.0.26/32"], keepalive: 25 };

const device = (...peers: DumpPeer[]) => dump({ privateKey: priv, publicKey: pub, listenPort: 51820, peers });
const upLink: LinkState = { up: true, mtu: 1420, addrs: ["10.100.0.1/32"] };
/** The host's own routes: a default route and its uplink's prefix. */
const hostRoutes: RouteRow[] = [
  { dst: "0.0.0.0/0", dev: "eth0", proto: 4 },
  { dst: "192.0.2.0/24", dev: "eth0", proto: 2 },
];
const r80 = (dst: string, dev = "plexd0"): RouteRow => ({ dst, dev, proto: 80 });
const add = (...dsts: string[]) => dsts.map((d) => `route add ${d} dev plexd0 proto 80`);
const del = (...dsts: string[]) => dsts.map((d) => `route del ${d} dev plexd0 proto 80`);
/** A whole device as the `wg` config format states it (what syncconf gets). */
const whole = (...peers: WgPeer[]) => renderConfig({ privateKey: priv, listenPort: 51820, fwmark: 0 }, peers);
const peersOnly = (...peers: WgPeer[]) => renderConfig({}, peers);

type RequestInit = { dryRun?: boolean; recreate?: boolean; generation?: bigint; baseGeneration?: bigint; removedPeerKeys?: string[] };
type PeerInit = MessageInitShape<typeof WireGuardPeerSchema>;
const request = (over: { interface?: string; privateKey?: string; listenPort?: number; addresses?: string[]; mtu?: number } = {}, peers: PeerInit[] = [specA], req: RequestInit = {}) =>
  create(ApplyMeshRequestSchema, { ...req, spec: { interface: "plexd0", privateKey: priv, listenPort: 51820, addresses: ["10.100.0.1/32"], mtu: 1420, peers, ...over } });

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "plexd-apply-"));
});
afterEach(async () => {
  const left = await readdir(dir);
  await rm(dir, { recursive: true, force: true });
  // wgTool's FIFOs never outlive an apply, whatever happened to it.
  expect(left.filter((f) => f.endsWith(".fifo"))).toEqual([]);
});

function engine(transcript: TranscriptEntry[], o: { config?: object; host?: FakeHost } = {}) {
  const runner = new TranscriptRunner(transcript);
  const host = o.host ?? new FakeHost({ bins: ["wireguard-go"] });
  const { log, lines, text } = captureLog();
  const deps = meshDeps({ runner, host, config: privConfigFrom({ mesh: { interface: "plexd0", ...o.config } }), log, startedAtMs: 0, runDir: dir });
  return { runner, host, lines, apply: makeApplyMesh(deps), secretsLeaked: () => [priv, psk].some((k) => runner.commands.join("\n").includes(k) || text().includes(k)) };
}
const msgs = (lines: Record<string, unknown>[]) => lines.map((l) => l.msg);

describe("ApplyMesh: plans and the order of steps", () => {
  it("applies nothing when the device already matches: only the two reads run, both cancellable", async () => {
    const { runner, apply, lines } = engine([ipRead("plexd0", upLink, [...hostRoutes, r80("10.100.0.3/32")]), wgShow("plexd0", device(dumpA))]);
    expect((await apply(request(), ctx())).result).toEqual({ changed: false, plan: [] });
    expect(runner.done).toBe(true);
    expect(runner.ran.map((r) => r.signal)).toEqual([true, true]);
    expect(msgs(lines)).not.toContain("mesh applied");
  });

  it("dry_run returns the plan and runs no mutation", async () => {
    const { runner, apply } = engine([ipRead("plexd0", upLink, [...hostRoutes, r80("10.100.0.3/32")]), wgShow("plexd0", device(dumpA))]);
    const res = await apply(request({}, [specA, specB], { dryRun: true }), ctx());
    expect(res.result).toEqual({
      changed: false,
      plan: [
        { kind: "add_peer", detail: b },
        { kind: "add_route", detail: "10.100.0.4/32" },
      ],
    });
    expect(runner.done).toBe(true);
  });

  it("creates a kernel device: create, then one ip batch for the link, the peers through a FIFO, then their routes", async () => {
    const { runner, apply, lines, secretsLeaked } = engine([
      ipRead("plexd0", undefined, hostRoutes),
      wgShow("plexd0", undefined),
      { cmd: ["ip", "link", "add", "plexd0", "type", "wireguard"], result: ok() },
      ipBatch(["link set plexd0 mtu 1420", "addr replace 10.100.0.1/32 dev plexd0", "link set plexd0 up"]),
      ...wgConf(
        dir,
        "addconf",
        "plexd0",
        [
          "[Interface]",
          `PrivateKey = ${priv}`,
          "ListenPort = 51820",
          "[Peer]",
          `PublicKey = ${a}`,
          "PresharedKey = AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
          "Endpoint = 192.0.2.3:51820",
          "AllowedIPs = 10.100.0.3/32",
          "PersistentKeepalive = 25",
          "[Peer]",
          `PublicKey = ${b}`,
          `PresharedKey = ${psk}`,
          "AllowedIPs = 10.100.0.4/32",
          "PersistentKeepalive = off",
          "",
        ].join("\n"),
      ),
      ipBatch(add("10.100.0.3/32", "10.100.0.4/32")),
    ]);
    const res = await apply(request({}, [specA, specB]), ctx());
    expect(runner.done).toBe(true);
    expect(res.result?.changed).toBe(true);
    expect(res.result?.plan?.map((s) => s.kind)).toEqual(["create_interface", "set_mtu", "set_private_key", "set_listen_port", "add_peer", "add_peer", "add_address", "link_up", "add_route", "add_route"]);
    expect(lines.find((l) => l.msg === "interface created")).toMatchObject({ interface: "plexd0", impl: "kernel" });
    expect(lines.find((l) => l.msg === "mesh applied")).toMatchObject({ interface: "plexd0", uid: 1001, pid: 4242, steps: 10, peers: 2, delta: false, foreignRoutes: [] });
    // Mutations, once started, run to their end: none of them was handed the caller's signal.
    expect(runner.ran.filter((r) => r.signal).map((r) => r.cmd[0])).toEqual(["ip", "wg"]);
    expect(secretsLeaked()).toBe(false);
  });

  it("every kind of change in one apply: link, upserts, new routes, removals, old routes, old addresses — in that order", async () => {
    const { runner, apply, secretsLeaked } = engine([
      ipRead("plexd0", { up: false, mtu: 1400, addrs: ["10.100.0.1/32", "10.100.9.1/32"] }, [...hostRoutes, r80("10.100.0.3/32"), r80("10.100.0.26/32")]),
      wgShow("plexd0", device({ ...dumpA, endpoint: "192.0.2.99:1" }, dumpZ)),
      ipBatch(["link set plexd0 mtu 1420", "addr replace fd00::1/128 dev plexd0", "link set plexd0 up"]),
      ...wgConf(dir, "addconf", "plexd0", peersOnly(wgA, wgB)),
      ipBatch(add("10.100.0.4/32")),
      ...wgConf(dir, "syncconf", "plexd0", whole(wgA, wgB)),
      ipBatch(del("10.100.0.26/32")),
      ipBatch(["addr del 10.100.9.1/32 dev plexd0"]),
    ]);
    const res = await apply(request({ addresses: ["10.100.0.1/32", "fd00::1/128"] }, [specA, specB]), ctx());
    expect(runner.done).toBe(true);
    expect(res.result).toEqual({
      changed: true,
      plan: [
        { kind: "set_mtu", detail: "1420" },
        { kind: "update_peer", detail: `${a} endpoint` },
        { kind: "add_peer", detail: b },
        { kind: "remove_peer", detail: z },
        { kind: "add_address", detail: "fd00::1/128" },
        { kind: "remove_address", detail: "10.100.9.1/32" },
        { kind: "link_up", detail: "plexd0" },
        { kind: "add_route", detail: "10.100.0.4/32" },
        { kind: "remove_route", detail: "10.100.0.26/32" },
      ],
    });
    expect(secretsLeaked()).toBe(false);
  });

  it("a changed private key or port is set with the upserts, and only then", async () => {
    const { runner, apply } = engine([
      ipRead("plexd0", upLink, [r80("10.100.0.3/32")]),
      wgShow("plexd0", dump({ privateKey: key(8), publicKey: pub, listenPort: 51000, peers: [dumpA] })),
      ...wgConf(dir, "addconf", "plexd0", renderConfig({ privateKey: priv, listenPort: 51820 }, [])),
    ]);
    expect((await apply(request(), ctx())).result?.plan).toEqual([
      { kind: "set_private_key", detail: "" },
      { kind: "set_listen_port", detail: "51820" },
    ]);
    expect(runner.done).toBe(true);
  });

  it("applies are serialised on the mesh lock: a second one reads only after the first has finished", async () => {
    let release = (): void => undefined;
    const held = new Promise<void>((r) => (release = r));
    const { runner, apply } = engine([
      ipRead("plexd0", upLink, [r80("10.100.0.3/32")]),
      wgShow("plexd0", device(dumpA)),
      ...wgConf(dir, "addconf", "plexd0", peersOnly(wgB), ok(), { effect: () => held }),
      ipBatch(add("10.100.0.4/32")),
      ipRead("plexd0", upLink, [r80("10.100.0.3/32"), r80("10.100.0.4/32")]),
      wgShow("plexd0", device(dumpA, dumpB)),
    ]);
    const first = apply(request({}, [specA, specB]), ctx());
    const second = apply(request({}, [specA, specB]), ctx());
    await until(() => runner.commands.length >= 4);
    await new Promise((r) => setTimeout(r, 30));
    // The first is held inside its wg write; the second has not even read.
    expect(runner.commands).toHaveLength(4);
    expect(runner.commands.at(-1)).toBe("wg addconf plexd0 /dev/stdin");
    release();
    expect((await first).result?.changed).toBe(true);
    expect((await second).result).toEqual({ changed: false, plan: [] });
    expect(runner.done).toBe(true);
  });
});

describe("ApplyMesh: routes it owns and routes it leaves alone", () => {
  it("never adds a route another owner has for the same destination, nor the kernel's prefix route of an address; reports them", async () => {
    const bridge = { publicKey: b, allowedIps: ["10.100.5.0/24"] };
    const site = { publicKey: c, allowedIps: ["fd00::/64", "10.100.0.6/32"] };
    const { runner, apply, lines } = engine([
      ipRead("plexd0", { ...upLink, addrs: ["10.100.0.1/32", "fd00::1/64"] }, [
        ...hostRoutes,
        r80("10.100.0.3/32"),
        { dst: "10.100.5.0/24", dev: "eth1", proto: 3 }, // an operator's route
        { dst: "fd00::/64", dev: "plexd0", proto: 2 }, // the kernel's, for fd00::1/64
        r80("10.100.0.6/32", "plexd1"), // privhelper's, via another interface
        { dst: "10.200.0.0/16", dev: "plexd0", proto: 3 }, // added by hand via our device
      ]),
      wgShow("plexd0", device(dumpA)),
      ...wgConf(dir, "addconf", "plexd0", peersOnly({ ...wgB, presharedKey: "", allowedIps: ["10.100.5.0/24"] }, { ...wgC, allowedIps: ["10.100.0.6/32", "fd00::/64"] })),
    ]);
    const res = await apply(request({ addresses: ["10.100.0.1/32", "fd00::1/64"] }, [specA, bridge, site]), ctx());
    expect(runner.done).toBe(true); // no route add, no route del at all
    expect(res.result?.plan?.map((s) => s.kind)).toEqual(["add_peer", "add_peer"]);
    expect(lines.find((l) => l.msg === "mesh applied")?.foreignRoutes).toEqual(["10.100.0.6/32", "10.100.5.0/24", "fd00::/64"]);
  });

  it("removes only its own routes via this interface when no peer wants them any more", async () => {
    const { runner, apply } = engine([
      ipRead("plexd0", upLink, [...hostRoutes, r80("10.100.0.3/32"), r80("10.100.0.77/32"), r80("10.100.0.78/32", "plexd1"), { dst: "10.100.0.79/32", dev: "plexd0", proto: 3 }]),
      wgShow("plexd0", device(dumpA)),
      ipBatch(del("10.100.0.77/32")),
    ]);
    expect((await apply(request(), ctx())).result).toEqual({ changed: true, plan: [{ kind: "remove_route", detail: "10.100.0.77/32" }] });
    expect(runner.done).toBe(true);
  });

  it("puts back a route of its own that someone deleted", async () => {
    const { runner, apply } = engine([ipRead("plexd0", upLink, hostRoutes), wgShow("plexd0", device(dumpA)), ipBatch(add("10.100.0.3/32"))]);
    expect((await apply(request(), ctx())).result?.plan).toEqual([{ kind: "add_route", detail: "10.100.0.3/32" }]);
    expect(runner.done).toBe(true);
  });
});

describe("ApplyMesh: default routes", () => {
  it("refuses 0.0.0.0/0 and ::/0 unless mesh.allow_default_route, before reading anything", async () => {
    for (const ip of ["0.0.0.0/0", "::/0"]) {
      const { runner, apply } = engine([]);
      await expect(apply(request({}, [{ ...specA, allowedIps: [ip] }]), ctx())).rejects.toMatchObject({ code: "invalid_argument", message: expect.stringContaining("mesh.allow_default_route") });
      expect(runner.ran).toEqual([]);
    }
  });

  // Full tunnel the way wg-quick does it: the default routes go to table 51820, two policy rules
  // send everything but the device's own packets (fwmark 51820) there, and main is never touched.
  const ruleShow = (f: 4 | 6, rows: object[] = []): TranscriptEntry => ({ cmd: ["ip", "-N", "-j", `-${f}`, "rule", "show"], result: ok(JSON.stringify([{ priority: 0, src: "all", table: "255" }, ...rows])) });
  const ourRules = (f: 4 | 6) => ruleShow(f, [
    { priority: 32764, src: "all", table: "254", suppress_prefixlen: 0, protocol: "80" },
    { priority: 32765, not: null, src: "all", fwmark: "0xca6c", table: "51820", protocol: "80" },
  ]);
  const ruleBatch = (f: 4 | 6, lines: string[]): TranscriptEntry => ({ cmd: ["ip", `-${f}`, "-batch", "-"], input: lines.join("\n") + "\n", result: ok() });
  const addRules = ["rule add not fwmark 51820 table 51820 protocol 80", "rule add table 254 suppress_prefixlength 0 protocol 80"];
  const tunnelRoutes: RouteRow[] = [{ dst: "0.0.0.0/0", dev: "plexd0", proto: 80, table: 51820 }, { dst: "::/0", dev: "plexd0", proto: 80, table: 51820 }];

  it("with mesh.allow_default_route the peer gets them in the full-tunnel table, with the device's fwmark and two rules per family; main's default route is not touched", async () => {
    const full = { ...specA, allowedIps: ["0.0.0.0/0", "::/0"] };
    const { runner, apply, lines } = engine(
      [
        ipRead("plexd0", upLink, [...hostRoutes, r80("10.100.0.3/32")]),
        ruleShow(4),
        ruleShow(6),
        wgShow("plexd0", device(dumpA)),
        ...wgConf(dir, "addconf", "plexd0", renderConfig({ fwmark: 51820 }, [{ ...wgA, allowedIps: ["0.0.0.0/0", "::/0"] }])),
        // No peer leaves in between, so both route changes are one batch, additions first.
        ipBatch(["route add 0.0.0.0/0 dev plexd0 table 51820 proto 80", "route add ::/0 dev plexd0 table 51820 proto 80", ...del("10.100.0.3/32")]),
        ruleBatch(4, addRules),
        ruleBatch(6, addRules),
      ],
      { config: { allow_default_route: true } },
    );
    const res = await apply(request({}, [full]), ctx());
    expect(runner.done).toBe(true);
    expect(res.result?.changed).toBe(true);
    expect(res.result?.plan?.map((s) => s.kind)).toEqual(["set_fwmark", "update_peer", "add_route", "add_route", "remove_route", "add_rule", "add_rule", "add_rule", "add_rule"]);
    expect(lines.find((l) => l.msg === "mesh applied")?.foreignRoutes).toEqual([]);
  });

  it("full tunnel in place: nothing to do; the peer gone: its routes, then the rules go, and the fwmark stays", async () => {
    const dumpFull = { ...dumpA, allowedIps: ["0.0.0.0/0", "::/0"] };
    const marked = dump({ privateKey: priv, publicKey: pub, listenPort: 51820, peers: [dumpFull] }).replace("\toff\n", "\t0xca6c\n");
    const same = engine([ipRead("plexd0", upLink, [...hostRoutes, ...tunnelRoutes]), ourRules(4), ourRules(6), wgShow("plexd0", marked)], { config: { allow_default_route: true } });
    expect((await same.apply(request({}, [{ ...specA, allowedIps: ["0.0.0.0/0", "::/0"] }]), ctx())).result).toEqual({ changed: false, plan: [] });
    expect(same.runner.done).toBe(true);

    const gone = engine(
      [
        ipRead("plexd0", upLink, [...hostRoutes, ...tunnelRoutes]),
        ourRules(4),
        ourRules(6),
        wgShow("plexd0", marked),
        ...wgConf(dir, "addconf", "plexd0", renderConfig({}, [wgA])),
        ipBatch(["route add 10.100.0.3/32 dev plexd0 proto 80", "route del 0.0.0.0/0 dev plexd0 table 51820 proto 80", "route del ::/0 dev plexd0 table 51820 proto 80"]),
        ruleBatch(4, ["rule del priority 32764 protocol 80", "rule del priority 32765 protocol 80"]),
        ruleBatch(6, ["rule del priority 32764 protocol 80", "rule del priority 32765 protocol 80"]),
      ],
      { config: { allow_default_route: true } },
    );
    expect((await gone.apply(request({}, [specA]), ctx())).result?.changed).toBe(true);
    expect(gone.runner.done).toBe(true);
  });

  // docs/architecture.md#privhelper: "Default routes and prefixes that cover the node's own uplink are refused unless
  // the config allows full-tunnel routing." 0.0.0.0/1 + 128.0.0.0/1 (wg-quick's way of taking
  // the default route without replacing it) is the whole IPv4 space, more specific than the
  // host's default route: privhelper adds both routes via plexd0 and the node's uplink traffic,
  // its WireGuard endpoints included, goes into the tunnel. Only a literal /0 is refused today.
  it("a default route split in halves (0.0.0.0/1 + 128.0.0.0/1) is refused like /0 unless mesh.allow_default_route", async () => {
    const { runner, apply } = engine([
      ipRead("plexd0", upLink, [...hostRoutes, r80("10.100.0.3/32")]),
      wgShow("plexd0", device(dumpA)),
      ...wgConf(dir, "addconf", "plexd0", undefined),
      ipBatch(add("0.0.0.0/1", "128.0.0.0/1")),
      ipBatch(del("10.100.0.3/32")),
    ]);
    const outcome = await apply(request({}, [{ ...specA, allowedIps: ["0.0.0.0/1", "128.0.0.0/1"] }]), ctx()).then(
      () => "applied",
      (err: unknown) => PlexdError.from(err).code,
    );
    expect(outcome).toBe("invalid_argument");
    expect(runner.commands.some((cmd) => cmd.startsWith("wg "))).toBe(false);
  });
});

describe("ApplyMesh: a failed step is named and rolled back to what was read", () => {
  it("set_peers fails after the link changed: the link is put back, nothing else is touched", async () => {
    const { runner, apply, lines } = engine([
      ipRead("plexd0", upLink, [...hostRoutes, r80("10.100.0.3/32")]),
      wgShow("plexd0", device(dumpA)),
      ipBatch(["link set plexd0 mtu 1380", "addr replace fd00::1/128 dev plexd0"]),
      ...wgConf(dir, "addconf", "plexd0", peersOnly(wgB), fail("Unable to modify interface: Invalid argument\n", 1)),
      // rollback: read again, then restore the mtu and drop the new address
      ipRead("plexd0", { ...upLink, mtu: 1380, addrs: ["10.100.0.1/32", "fd00::1/128"] }, [...hostRoutes, r80("10.100.0.3/32")]),
      wgShow("plexd0", device(dumpA)),
      ipBatch(["link set plexd0 mtu 1420"]),
      ipBatch(["addr del fd00::1/128 dev plexd0"]),
    ]);
    const res = await apply(request({ mtu: 1380, addresses: ["10.100.0.1/32", "fd00::1/128"] }, [specA, specB]), ctx());
    expect(runner.done).toBe(true);
    expect(res.result).toMatchObject({ changed: false, failedStep: "set_peers", rolledBack: true });
    expect(res.result?.error).toContain("Invalid argument");
    expect(lines.find((l) => l.msg === "mesh apply failed")).toMatchObject({ level: 40, step: "set_peers", rolledBack: true, uid: 1001, pid: 4242 });
    // Only the first read could be cancelled; the rollback's own read must run to its end.
    expect(runner.ran.map((r) => r.signal)).toEqual([true, true, false, false, false, false, false, false, false]);
  });

  it("add_routes fails half-way: the new peers and the route that made it are taken back out", async () => {
    const { runner, apply } = engine([
      ipRead("plexd0", upLink, [...hostRoutes, r80("10.100.0.3/32")]),
      wgShow("plexd0", device(dumpA)),
      ...wgConf(dir, "addconf", "plexd0", peersOnly(wgB, wgC)),
      ipBatch(add("10.100.0.4/32", "10.100.0.6/32"), fail("RTNETLINK answers: File exists\nCommand failed -:2\n", 1)),
      // rollback: 10.100.0.4/32 got in; 10.100.0.6/32 is someone else's (it appeared meanwhile)
      ipRead("plexd0", upLink, [...hostRoutes, r80("10.100.0.3/32"), r80("10.100.0.4/32"), { dst: "10.100.0.6/32", dev: "eth0" }]),
      wgShow("plexd0", device(dumpA, dumpB, { publicKey: c, allowedIps: ["10.100.0.6/32"] })),
      ...wgConf(dir, "syncconf", "plexd0", whole(wgA)),
      ipBatch(del("10.100.0.4/32")),
    ]);
    const res = await apply(request({}, [specA, specB, specC]), ctx());
    expect(runner.done).toBe(true);
    expect(res.result).toMatchObject({ changed: false, failedStep: "add_routes", rolledBack: true });
  });

  it("the last step (remove_addresses) fails: removed peers and routes come back, added ones go", async () => {
    const before = { up: true, mtu: 1420, addrs: ["10.100.0.1/32", "10.100.9.1/32"] };
    const { runner, apply } = engine([
      ipRead("plexd0", before, [...hostRoutes, r80("10.100.0.3/32"), r80("10.100.0.26/32")]),
      wgShow("plexd0", device(dumpA, dumpZ)),
      ...wgConf(dir, "addconf", "plexd0", peersOnly(wgB)),
      ipBatch(add("10.100.0.4/32")),
      ...wgConf(dir, "syncconf", "plexd0", whole(wgA, wgB)),
      ipBatch(del("10.100.0.26/32")),
      ipBatch(["addr del 10.100.9.1/32 dev plexd0"], fail("RTNETLINK answers: Cannot assign requested address\n", 2)),
      // rollback, in the same safe order: Z back, its route back, B out, B's route out
      ipRead("plexd0", before, [...hostRoutes, r80("10.100.0.3/32"), r80("10.100.0.4/32")]),
      wgShow("plexd0", device(dumpA, dumpB)),
      ...wgConf(dir, "addconf", "plexd0", peersOnly(wgZ)),
      ipBatch(add("10.100.0.26/32")),
      ...wgConf(dir, "syncconf", "plexd0", whole(wgA, wgZ)),
      ipBatch(del("10.100.0.4/32")),
    ]);
    const res = await apply(request({}, [specA, specB]), ctx());
    expect(runner.done).toBe(true);
    expect(res.result).toMatchObject({ changed: false, failedStep: "remove_addresses", rolledBack: true });
  });

  it("a device it created is removed again when a later step fails", async () => {
    const { runner, apply } = engine([
      ipRead("plexd0", undefined, hostRoutes),
      wgShow("plexd0", undefined),
      { cmd: ["ip", "link", "add", "plexd0", "type", "wireguard"], result: ok() },
      ipBatch(["link set plexd0 mtu 1420", "addr replace 10.100.0.1/32 dev plexd0", "link set plexd0 up"]),
      ...wgConf(dir, "addconf", "plexd0", undefined, fail("Unable to modify interface: Protocol not supported\n", 1)),
      // rollback = destroy: no wireguard-go serves it, the kernel link is deleted
      ipRead("plexd0", { ...upLink, addrs: ["10.100.0.1/32"] }, hostRoutes),
      { cmd: ["ip", "link", "del", "plexd0"], result: ok() },
    ]);
    const res = await apply(request(), ctx());
    expect(runner.done).toBe(true);
    expect(res.result).toMatchObject({ changed: false, failedStep: "set_peers", rolledBack: true });
    expect(res.result?.plan?.[0]).toEqual({ kind: "create_interface", detail: "plexd0" });
  });

  it("a failed create is named create_interface", async () => {
    const { runner, apply } = engine(
      [
        ipRead("plexd0", undefined, hostRoutes),
        wgShow("plexd0", undefined),
        { cmd: ["ip", "link", "add", "plexd0", "type", "wireguard"], result: fail("Error: Unknown device type.\n", 2) },
        // rollback = destroy: nothing there
        ipRead("plexd0", undefined, hostRoutes),
      ],
      { host: new FakeHost() },
    );
    const res = await apply(request(), ctx());
    expect(runner.done).toBe(true);
    expect(res.result).toMatchObject({ changed: false, failedStep: "create_interface", rolledBack: true, error: expect.stringContaining("wireguard-go not on PATH") });
  });

  it("a rollback that fails too says so: changed, not rolled back, logged as an error", async () => {
    const { runner, apply, lines } = engine([
      ipRead("plexd0", upLink, [r80("10.100.0.3/32")]),
      wgShow("plexd0", device(dumpA)),
      ...wgConf(dir, "addconf", "plexd0", undefined),
      ipBatch(add("10.100.0.4/32"), fail("RTNETLINK answers: No buffer space available\n", 2)),
      ipRead("plexd0", upLink, [r80("10.100.0.3/32")]),
      wgShow("plexd0", device(dumpA, dumpB)),
      ...wgConf(dir, "syncconf", "plexd0", undefined, fail("Unable to modify interface: No buffer space available\n", 1)),
    ]);
    const res = await apply(request({}, [specA, specB]), ctx());
    expect(runner.done).toBe(true);
    expect(res.result).toMatchObject({ changed: true, failedStep: "add_routes", rolledBack: false });
    expect(lines.find((l) => l.msg === "mesh rollback failed")).toMatchObject({ level: 50, step: "add_routes" });
  });
});

describe("ApplyMesh: cancellation", () => {
  it("a call cancelled before the first mutation applies nothing", async () => {
    const ac = new AbortController();
    const { runner, apply } = engine([ipRead("plexd0", upLink, [r80("10.100.0.3/32")]), wgShow("plexd0", device(dumpA), { effect: () => ac.abort(new PlexdError("cancelled", "call cancelled")) })]);
    await expect(apply(request({}, [specA, specB]), ctx(ac.signal))).rejects.toMatchObject({ code: "cancelled" });
    expect(runner.done).toBe(true);
  });

  it("a call cancelled once the first mutation started is applied to its end", async () => {
    const ac = new AbortController();
    const { runner, apply } = engine([
      ipRead("plexd0", upLink, [r80("10.100.0.3/32")]),
      wgShow("plexd0", device(dumpA)),
      ...wgConf(dir, "addconf", "plexd0", peersOnly(wgB), ok(), { effect: () => ac.abort(new PlexdError("cancelled", "call cancelled")) }),
      ipBatch(add("10.100.0.4/32")),
    ]);
    const res = await apply(request({}, [specA, specB]), ctx(ac.signal));
    expect(res.result?.changed).toBe(true);
    expect(runner.done).toBe(true);
    expect(runner.ran.map((r) => r.signal)).toEqual([true, true, false, false, false]);
  });
});

describe("ApplyMesh: deltas", () => {
  const liveAB = () => [ipRead("plexd0", upLink, [...hostRoutes, r80("10.100.0.3/32"), r80("10.100.0.4/32")]), wgShow("plexd0", device(dumpA, dumpB))];
  // A delta reads the device's peers, then only the routes of the allowed IPs it changes.
  const deltaAB = (...dsts: string[]) => [wgShow("plexd0", device(dumpA, dumpB)), ...(dsts.length > 0 ? [ipExact(dsts, [r80("10.100.0.3/32"), r80("10.100.0.4/32")])] : [])];
  const full = (generation: bigint) => request({}, [specA, specB], { generation });

  it("a delta on the last applied generation is merged onto the live peers: only what it names changes", async () => {
    const { runner, apply, lines } = engine([
      ...liveAB(),
      ...deltaAB("10.100.0.4/32", "10.100.0.6/32"),
      ...wgConf(dir, "addconf", "plexd0", peersOnly(wgC)),
      ipBatch(add("10.100.0.6/32")),
      // B goes: the whole device restated, A as it is live
      ...wgConf(dir, "syncconf", "plexd0", whole(wgA, wgC)),
      ipBatch(del("10.100.0.4/32")),
    ]);
    expect((await apply(full(7n), ctx())).result).toEqual({ changed: false, plan: [] });
    const res = await apply(request({}, [specC], { generation: 8n, baseGeneration: 7n, removedPeerKeys: [b] }), ctx());
    expect(res.result?.plan).toEqual([
      { kind: "add_peer", detail: c },
      { kind: "remove_peer", detail: b },
      { kind: "add_route", detail: "10.100.0.6/32" },
      { kind: "remove_route", detail: "10.100.0.4/32" },
    ]);
    expect(runner.done).toBe(true);
    expect(lines.find((l) => l.msg === "mesh applied")).toMatchObject({ delta: true, peers: 2 });
  });

  it("a delta may update a live peer in place", async () => {
    const { runner, apply } = engine([...liveAB(), ...deltaAB(), ...wgConf(dir, "addconf", "plexd0", peersOnly({ ...wgB, keepalive: 5 }))]);
    await apply(full(7n), ctx());
    const res = await apply(request({}, [{ ...specB, persistentKeepalive: 5 }], { generation: 8n, baseGeneration: 7n }), ctx());
    expect(res.result?.plan).toEqual([{ kind: "update_peer", detail: `${b} persistent_keepalive` }]);
    expect(runner.done).toBe(true);
  });

  it("FAILED_PRECONDITION for a base privhelper did not apply last, reading nothing", async () => {
    const { runner, apply } = engine([...liveAB()]);
    await expect(apply(request({}, [specC], { generation: 2n, baseGeneration: 1n }), ctx())).rejects.toMatchObject({ code: "failed_precondition" });
    await apply(full(7n), ctx());
    await expect(apply(request({}, [specC], { generation: 8n, baseGeneration: 6n }), ctx())).rejects.toMatchObject({ code: "failed_precondition", message: expect.stringContaining("send the whole spec") });
    expect(runner.done).toBe(true);
  });

  it("FAILED_PRECONDITION when the device is gone, even on the right base", async () => {
    const { runner, apply } = engine([...liveAB(), wgShow("plexd0", undefined)]);
    await apply(full(7n), ctx());
    await expect(apply(request({}, [specC], { generation: 8n, baseGeneration: 7n }), ctx())).rejects.toMatchObject({ code: "failed_precondition" });
    expect(runner.done).toBe(true);
  });

  it("a dry run records no generation; a failed apply forgets the one it had", async () => {
    const { runner, apply } = engine([
      ...liveAB(),
      ...liveAB(),
      ...liveAB(),
      ...wgConf(dir, "addconf", "plexd0", peersOnly(wgC), fail("Unable to modify interface\n", 1)),
      ...liveAB(), // the rollback's read: nothing to undo
    ]);
    await apply(request({}, [specA, specB], { generation: 9n, dryRun: true }), ctx());
    await expect(apply(request({}, [specC], { generation: 10n, baseGeneration: 9n }), ctx())).rejects.toMatchObject({ code: "failed_precondition" });
    await apply(full(7n), ctx());
    expect((await apply(request({}, [specA, specB, specC], { generation: 8n }), ctx())).result?.rolledBack).toBe(true);
    await expect(apply(request({}, [specC], { generation: 9n, baseGeneration: 8n }), ctx())).rejects.toMatchObject({ code: "failed_precondition" });
    await expect(apply(request({}, [specC], { generation: 9n, baseGeneration: 7n }), ctx())).rejects.toMatchObject({ code: "failed_precondition" });
    expect(runner.done).toBe(true);
  });

  it("a delta's peer may not claim an allowed IP a live peer keeps", async () => {
    const { runner, apply } = engine([...liveAB(), ...deltaAB()]);
    await apply(full(7n), ctx());
    await expect(apply(request({}, [{ ...specC, allowedIps: ["10.100.0.4/32"] }], { generation: 8n, baseGeneration: 7n }), ctx())).rejects.toMatchObject({
      code: "invalid_argument",
      message: expect.stringContaining("10.100.0.4/32 is also claimed"),
    });
    expect(runner.done).toBe(true);
  });

  it("removed_peer_keys only with a base and only as keys, refused before anything is read", async () => {
    const { runner, apply } = engine([]);
    await expect(apply(request({}, [specA], { removedPeerKeys: [b] }), ctx())).rejects.toMatchObject({ code: "invalid_argument", message: expect.stringContaining("only with base_generation") });
    await expect(apply(request({}, [specA], { baseGeneration: 1n, removedPeerKeys: ["plexd0; rm -rf /"] }), ctx())).rejects.toMatchObject({ code: "invalid_argument", message: expect.stringContaining("removed_peer_keys[0]") });
    expect(runner.ran).toEqual([]);
  });

  it("a delta naming the same peer twice is refused like a full spec", async () => {
    const { apply } = engine([...liveAB()]);
    await apply(full(7n), ctx());
    const twice = [specC, { ...specC, allowedIps: ["10.100.0.7/32"] }];
    const outcome = await apply(request({}, twice, { generation: 8n, baseGeneration: 7n }), ctx()).then(
      () => "applied",
      (err: unknown) => PlexdError.from(err).code,
    );
    expect(outcome).toBe("invalid_argument");
  });
});

describe("ApplyMesh: what is on the interface", () => {
  const veth: LinkState = { kind: "veth", up: true, mtu: 1500, addrs: ["10.100.0.1/32"] };

  it("a link of that name that is not WireGuard is FAILED_PRECONDITION without recreate", async () => {
    const { runner, apply } = engine([ipRead("plexd0", veth, hostRoutes), wgShow("plexd0", undefined)]);
    await expect(apply(request(), ctx())).rejects.toMatchObject({ code: "failed_precondition", message: expect.stringContaining("kind veth") });
    expect(runner.done).toBe(true);
  });

  it("recreate deletes the link first, then builds the device from nothing", async () => {
    const { runner, apply } = engine([
      ipRead("plexd0", veth, [...hostRoutes, r80("10.100.0.3/32")]),
      wgShow("plexd0", undefined),
      // destroy: no wireguard-go; the link is there and goes
      ipRead("plexd0", veth, hostRoutes),
      { cmd: ["ip", "link", "del", "plexd0"], result: ok() },
      { cmd: ["ip", "link", "add", "plexd0", "type", "wireguard"], result: ok() },
      ipBatch(["link set plexd0 mtu 1420", "addr replace 10.100.0.1/32 dev plexd0", "link set plexd0 up"]),
      ...wgConf(dir, "addconf", "plexd0", renderConfig({ privateKey: priv, listenPort: 51820 }, [wgA])),
      // the old route died with the old link
      ipBatch(add("10.100.0.3/32")),
    ]);
    const res = await apply(request({}, [specA], { recreate: true }), ctx());
    expect(runner.done).toBe(true);
    expect(res.result?.plan?.slice(0, 2)).toEqual([
      { kind: "recreate_interface", detail: "plexd0" },
      { kind: "create_interface", detail: "plexd0" },
    ]);
  });

  it("refuses an interface off the allow-list without reading it, and an invalid peer having read nothing either", async () => {
    const { runner, apply } = engine([]);
    await expect(apply(request({ interface: "eth0" }), ctx())).rejects.toMatchObject({ code: "invalid_argument" });
    await expect(apply(request({}, [{ ...specA, allowedIps: ["10.100.0.3/33"] }]), ctx())).rejects.toMatchObject({ code: "invalid_argument" });
    expect(runner.ran).toEqual([]);
  });
});

describe("ApplyMesh with wireguard-go (UAPI)", () => {
  let sockDir: string;
  let server: Server;
  const sets: string[] = [];
  let setErrno = "0";
  const emptyDevice = `private_key=${Buffer.from(priv, "base64").toString("hex")}\nlisten_port=51820\nerrno=0\n\n`;
  let getReply = emptyDevice;
  beforeAll(async () => {
    sockDir = await mkdtemp(join(tmpdir(), "plexd-uapi-apply-"));
    server = createServer((conn) => {
      let buf = "";
      conn.setEncoding("utf8");
      conn.on("data", (d: string) => {
        buf += d;
        if (!buf.endsWith("\n\n")) return;
        if (buf.startsWith("get=1")) return void conn.end(getReply);
        sets.push(buf);
        conn.end(`errno=${setErrno}\n\n`);
      });
    });
    await new Promise<void>((r) => server.listen(join(sockDir, "plexd0.sock"), r));
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    await rm(sockDir, { recursive: true, force: true });
  });

  /** meshDeps' choice of backend, with the UAPI socket moved to the stand-in. */
  function userspace(transcript: TranscriptEntry[], host = new FakeHost({ bins: ["wireguard-go"] })) {
    const runner = new TranscriptRunner(transcript);
    host.onKill = () => host.files.delete(uapiSocket("plexd0"));
    const tool = wgTool(runner, dir);
    const uapi = uapiBackend(() => join(sockDir, "plexd0.sock"));
    const deps: MeshDeps = {
      runner,
      host,
      ip: ipTool(runner, 51820),
      runDir: dir,
      config: privConfigFrom({}),
      log: captureLog().log,
      meshLock: createLock(),
      wgFor: async (iface) => ((await host.exists(uapiSocket(iface))) ? uapi : tool),
    };
    return { runner, host, apply: makeApplyMesh(deps) };
  }
  const spawned = (host: FakeHost): TranscriptEntry => ({
    cmd: ["spawn", "/usr/bin/wireguard-go", "-f", "plexd0"],
    result: ok("31337"),
    effect: () => {
      host.procs.push({ pid: 31337, argv: ["/usr/bin/wireguard-go", "-f", "plexd0"] });
      host.files.add(uapiSocket("plexd0"));
    },
  });
  beforeEach(() => {
    sets.length = 0;
    setErrno = "0";
    getReply = emptyDevice;
  });

  /** No device, no kernel WireGuard: wireguard-go is started and its link configured. */
  const createsUserspaceDevice = (host: FakeHost): TranscriptEntry[] => [
    ipRead("plexd0", undefined, hostRoutes),
    wgShow("plexd0", undefined),
    { cmd: ["ip", "link", "add", "plexd0", "type", "wireguard"], result: fail("Error: Unknown device type.\n", 2) },
    spawned(host),
    ipRead("plexd0", { kind: "tun", up: false, mtu: 1420, addrs: [] }, hostRoutes),
    ipBatch(["link set plexd0 mtu 1420", "addr replace 10.100.0.1/32 dev plexd0", "link set plexd0 up"]),
  ];

  it("starts wireguard-go when the kernel has no WireGuard and configures it in one set, then routes", async () => {
    const host = new FakeHost({ bins: ["wireguard-go"] });
    const e = userspace(
      [
        ...createsUserspaceDevice(host),
        ipBatch(add("10.100.0.3/32")),
      ],
      host,
    );
    const res = await e.apply(request(), ctx());
    expect(e.runner.done).toBe(true);
    expect(res.result?.changed).toBe(true);
    expect(sets).toEqual([renderSet({ privateKey: priv, listenPort: 51820, upsert: [wgA], remove: [] })]);
  });

  it("upserts and removals are two separate sets, upserts first, each before its routes change", async () => {
    const hex = (k: string) => Buffer.from(k, "base64").toString("hex");
    getReply = `private_key=${hex(priv)}\nlisten_port=51820\npublic_key=${hex(z)}\npreshared_key=${"0".repeat(64)}\nallowed_ip=10.100.0.26/32\npersistent_keepalive_interval=0\nerrno=0\n\n`;
    const seen: number[] = [];
    const e = userspace([
      // the device is read through its socket: no `wg show`
      ipRead("plexd0", { kind: "tun", ...upLink }, [...hostRoutes, r80("10.100.0.26/32")]),
      ipBatch(add("10.100.0.3/32"), ok(), { effect: () => void seen.push(sets.length) }),
      ipBatch(del("10.100.0.26/32"), ok(), { effect: () => void seen.push(sets.length) }),
    ]);
    e.host.files.add(uapiSocket("plexd0"));
    const res = await e.apply(request(), ctx());
    expect(e.runner.done).toBe(true);
    expect(res.result?.plan?.map((s) => s.kind)).toEqual(["add_peer", "remove_peer", "add_route", "remove_route"]);
    expect(sets).toEqual([renderSet({ upsert: [wgA], remove: [] }), renderSet({ upsert: [], remove: [z] })]);
    expect(seen).toEqual([1, 2]);
  });

  it("a refused set on a device it started stops that wireguard-go again", async () => {
    const host = new FakeHost({ bins: ["wireguard-go"] });
    const e = userspace(
      [
        ...createsUserspaceDevice(host),
        // rollback: SIGTERM; wireguard-go takes its link with it
        ipRead("plexd0", undefined, hostRoutes),
      ],
      host,
    );
    setErrno = "22";
    const res = await e.apply(request(), ctx());
    expect(e.runner.done).toBe(true);
    expect(res.result).toMatchObject({ failedStep: "set_peers", rolledBack: true, changed: false, error: expect.stringContaining("errno 22") });
    expect(e.host.killed).toEqual([{ pid: 31337, signal: "SIGTERM" }]);
    expect(e.host.procs).toEqual([]);
  });
});

describe("ApplyMesh: a bridge's user-access and site-to-site devices", () => {
  const bridge = { mode: "bridge", bridge: { access: [{ type: "wireguard" }] } };
  const s2s = "wg-s2s-1a2b3c4d";
  const site = { publicKey: a, endpoint: "192.0.2.3:51823", allowedIps: ["192.168.20.0/24"], persistentKeepalive: 25 };
  const dumpSite: DumpPeer = { publicKey: a, endpoint: "192.0.2.3:51823", allowedIps: ["192.168.20.0/24"], keepalive: 25 };
  const siteDevice = dump({ privateKey: priv, publicKey: pub, listenPort: 51823, peers: [dumpSite] });
  const bridgeEngine = (transcript: TranscriptEntry[], config: object = {}) => {
    const runner = new TranscriptRunner(transcript);
    const deps = meshDeps({ runner, host: new FakeHost({ bins: ["wireguard-go"] }), config: privConfigFrom({ mesh: { interface: "plexd0", ...config }, ...bridge }), log: captureLog().log, startedAtMs: 0, runDir: dir });
    return { runner, apply: makeApplyMesh(deps) };
  };

  it("outside mode: bridge they are not interfaces plexd may manage; nothing runs", async () => {
    for (const name of [s2s, "wg-access"]) {
      const { runner, apply } = engine([]);
      await expect(apply(request({ interface: name, listenPort: 51823, addresses: [] }, [site]), ctx())).rejects.toMatchObject({ code: "invalid_argument", message: expect.stringContaining(`"${name}" is not an interface plexd may manage (allowed: plexd0)`) });
      expect(runner.ran).toEqual([]);
    }
  });

  it("with mode: bridge a site-to-site device gets its peer's subnet as a route; the full tunnel's rules and fwmark stay the mesh interface's", async () => {
    const { runner, apply } = bridgeEngine([ipRead(s2s, upLink, hostRoutes), wgShow(s2s, siteDevice), ipBatch([`route add 192.168.20.0/24 dev ${s2s} proto 80`])], { allow_default_route: true });
    const res = await apply(request({ interface: s2s, listenPort: 51823, addresses: ["10.100.0.1/32"] }, [site]), ctx());
    expect(runner.done).toBe(true);
    expect(res.result?.plan?.map((s) => s.kind)).toEqual(["add_route"]);
  });

  it("a bridge device's peer never carries a default route, even with mesh.allow_default_route", async () => {
    const { runner, apply } = bridgeEngine([], { allow_default_route: true });
    await expect(apply(request({ interface: "wg-access", listenPort: 51822 }, [{ ...site, allowedIps: ["0.0.0.0/0"] }]), ctx())).rejects.toMatchObject({ code: "invalid_argument", message: expect.stringContaining("spec.peers[0]") });
    expect(runner.ran).toEqual([]);
  });

  it("remove deletes a bridge device; it refuses the mesh interface, other names and any combination", async () => {
    const { runner, apply } = bridgeEngine([ipRead(s2s, upLink), { cmd: ["ip", "link", "del", s2s], result: ok() }]);
    const res = await apply(create(ApplyMeshRequestSchema, { remove: true, spec: { interface: s2s } }), ctx());
    expect(runner.done).toBe(true);
    expect(res.result).toEqual({ changed: true, plan: [{ kind: "remove_interface", detail: `interface ${s2s}` }] });
    for (const [name, over, msg] of [["plexd0", {}, "is not a user-access or site-to-site interface"], ["eth0", {}, "is not a user-access or site-to-site interface"], [s2s, { dryRun: true }, "remove: only alone"]] as const) {
      const e = bridgeEngine([]);
      await expect(e.apply(create(ApplyMeshRequestSchema, { remove: true, ...over, spec: { interface: name } }), ctx())).rejects.toMatchObject({ code: "invalid_argument", message: expect.stringContaining(msg) });
      expect(e.runner.ran).toEqual([]);
    }
  });
});
