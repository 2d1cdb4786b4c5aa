import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { TeardownRequest } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { FakeHost, captureLog, ipBatch, ipRead, type RouteRow } from "../../test/support/privhelper.js";
import { TranscriptRunner, fail, ok, type TranscriptEntry } from "../../test/support/transcript.js";
import { privConfigFrom } from "../config.js";
import { createLock, meshDeps, type Lock } from "../handlers.js";
import { makeTeardown } from "./teardown.js";

const ctx = { signal: new AbortController().signal, uid: 0, pid: 77 };
const req = { purge: true } as TeardownRequest;
const noTable = (family: string, name: string) => fail(`Error: No such file or directory\nlist table ${family} ${name}\n`, 1);
const lo = { kind: "", up: true, mtu: 65536, addrs: ["127.0.0.1/8"] };
const hostRoutes: RouteRow[] = [
  { dst: "0.0.0.0/0", dev: "eth0", proto: 4 },
  { dst: "192.0.2.0/24", dev: "eth0", proto: 2 },
];
const ruleShow = (f: 4 | 6, rows: object[] = []): TranscriptEntry => ({ cmd: ["ip", "-N", "-j", `-${f}`, "rule", "show"], result: ok(JSON.stringify([{ priority: 0, src: "all", table: "255" }, ...rows])) });
/** No full-tunnel rules of privhelper's: two look-ups. */
const noRules = [ruleShow(4), ruleShow(6)];
const links = (...names: string[]): TranscriptEntry => ({ cmd: ["ip", "-j", "link", "show"], result: ok(JSON.stringify(names.map((ifname, i) => ({ ifindex: i + 1, ifname })))) });
const nftTables = (inet: boolean, stun: boolean): TranscriptEntry[] => [
  { cmd: ["nft", "list", "table", "inet", "plexd"], result: inet ? ok("table inet plexd {\n}\n") : noTable("inet", "plexd") },
  ...(inet ? [{ cmd: ["nft", "delete", "table", "inet", "plexd"], result: ok() }] : []),
  { cmd: ["nft", "list", "table", "ip", "plexd_stun"], result: stun ? ok("table ip plexd_stun {\n}\n") : noTable("ip", "plexd_stun") },
  ...(stun ? [{ cmd: ["nft", "delete", "table", "ip", "plexd_stun"], result: ok() }] : []),
];

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "plexd-teardown-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function teardownWith(transcript: TranscriptEntry[], o: { host?: FakeHost; iface?: string; locks?: Record<"mesh" | "firewall" | "stun", Lock> } = {}) {
  const runner = new TranscriptRunner(transcript);
  const host = o.host ?? new FakeHost({ bins: ["nft"] });
  const { log, lines } = captureLog();
  const deps = meshDeps({ runner, host, config: privConfigFrom({ mesh: { interface: o.iface ?? "plexd0" } }), log, startedAtMs: 0, runDir: dir });
  const locks = o.locks ?? { mesh: createLock(), firewall: createLock(), stun: createLock() };
  return { runner, host, lines, teardown: makeTeardown(deps, locks, join(dir, "cgroup")) };
}

describe("Teardown", () => {
  it("removes the allow-listed interface and its wireguard-go, every route and rule of protocol 80, table inet plexd and a stray table ip plexd_stun", async () => {
    const host = new FakeHost({ bins: ["nft"] });
    host.procs = [
      { pid: 77, argv: ["/usr/bin/wireguard-go", "-f", "plexd0"] },
      { pid: 78, argv: ["wireguard-go", "-f", "plexd0"], netns: "net:[2]" }, // the same name in another namespace: not ours
      { pid: 79, argv: ["wireguard-go", "-f", "wg0"] },
      { pid: 80, argv: ["/usr/bin/python3", "wireguard-go", "plexd0"] },
    ];
    await writeFile(join(dir, "wireguard-go-plexd0.log"), "old output\n");
    const { runner, teardown, lines } = teardownWith(
      [
        links("lo", "eth0", "plexd0", "plexdx"),
        // the TUN link went away with its wireguard-go
        ipRead("plexd0", undefined, hostRoutes),
        // routes that outlived their device (one plexd no longer names), and foreign ones
        ipRead("lo", lo, [...hostRoutes, { dst: "10.100.0.3/32", dev: "plexd9", proto: 80 }, { dst: "fd00::/64", dev: "plexd9", proto: 80 }, { dst: "10.200.0.0/16", dev: "plexd9", proto: 3 }]),
        ipBatch(["route del 10.100.0.3/32 dev plexd9 proto 80", "route del fd00::/64 dev plexd9 proto 80"]),
        // the full tunnel's rules (protocol 80) outlive every device; anyone else's stay
        ruleShow(4, [
          { priority: 32764, src: "all", table: "254", suppress_prefixlen: 0, protocol: "80" },
          { priority: 32765, not: null, src: "all", fwmark: "0xca6c", table: "51820", protocol: "80" },
          { priority: 32000, src: "all", fwmark: "0x1", table: "7", protocol: "4" },
        ]),
        ruleShow(6, [{ priority: 32765, not: null, src: "all", fwmark: "0xca6c", table: "51820", protocol: "80" }]),
        { cmd: ["ip", "-4", "-batch", "-"], input: "rule del priority 32764 protocol 80\nrule del priority 32765 protocol 80\n", result: ok() },
        { cmd: ["ip", "-6", "-batch", "-"], input: "rule del priority 32765 protocol 80\n", result: ok() },
        ...nftTables(true, true),
      ],
      { host },
    );
    const res = await teardown(req, ctx);
    expect(runner.done).toBe(true);
    expect(host.killed).toEqual([{ pid: 77, signal: "SIGTERM" }]);
    expect(res).toEqual({
      removed: [
        "wireguard-go pid 77",
        "interface plexd0",
        "route 10.100.0.3/32 dev plexd9",
        "route fd00::/64 dev plexd9",
        "rule -4 table 254 suppress_prefixlength 0",
        "rule -4 not fwmark 51820 table 51820",
        "rule -6 not fwmark 51820 table 51820",
        "table inet plexd",
        "table ip plexd_stun",
      ],
      errors: [],
    });
    expect(await readdir(dir)).toEqual([]);
    expect(lines.find((l) => l.msg === "teardown")).toMatchObject({ uid: 0, pid: 77, errors: [] });
  });

  it("deletes a kernel link itself", async () => {
    const { runner, teardown } = teardownWith([links("lo", "plexd0"), ipRead("plexd0", { up: true, mtu: 1420, addrs: ["10.100.0.1/32"] }), { cmd: ["ip", "link", "del", "plexd0"], result: ok() }, ipRead("lo", lo, hostRoutes), ...noRules, ...nftTables(false, false)]);
    expect((await teardown(req, ctx)).removed).toEqual(["interface plexd0"]);
    expect(runner.done).toBe(true);
  });

  it("a wireguard-go that ignores SIGTERM is killed", async () => {
    const host = new FakeHost({ bins: ["nft"] });
    host.diesOnTerm = false;
    // A name no real wireguard-go on this machine uses: its global socket path is removed after SIGKILL.
    host.procs = [{ pid: 91, argv: ["wireguard-go", "-f", "plexd-ut9"] }];
    const { runner, teardown } = teardownWith([links("lo"), ipRead("plexd-ut9", undefined), ipRead("lo", lo, hostRoutes), ...noRules, ...nftTables(false, false)], { host, iface: "plexd-ut9" });
    expect((await teardown(req, ctx)).removed).toEqual(["wireguard-go pid 91", "interface plexd-ut9"]);
    expect(host.killed).toEqual([
      { pid: 91, signal: "SIGTERM" },
      { pid: 91, signal: "SIGKILL" },
    ]);
    expect(runner.done).toBe(true);
  });

  it("deletes nothing that is not there: on a clean host only look-ups run", async () => {
    const { runner, teardown } = teardownWith([links("lo", "eth0"), ipRead("plexd0", undefined, hostRoutes), ipRead("lo", lo, hostRoutes), ...noRules, ...nftTables(false, false)]);
    expect(await teardown({ purge: false } as TeardownRequest, ctx)).toEqual({ removed: [], errors: [] });
    expect(runner.done).toBe(true);
  });

  it("goes on past a failure and reports each one with what failed", async () => {
    const { runner, teardown } = teardownWith([
      { cmd: ["ip", "-j", "link", "show"], result: fail("Cannot open netlink socket: Permission denied\n", 1) },
      ipRead("plexd0", undefined),
      ipRead("lo", lo, [{ dst: "10.100.0.3/32", dev: "plexd9", proto: 80 }]),
      ipBatch(["route del 10.100.0.3/32 dev plexd9 proto 80"], fail("RTNETLINK answers: Operation not permitted\n", 2)),
      ...noRules,
      { cmd: ["nft", "list", "table", "inet", "plexd"], result: ok("table inet plexd {\n}\n") },
      { cmd: ["nft", "delete", "table", "inet", "plexd"], result: fail("Error: Could not process rule: Device or resource busy\n", 1) },
      { cmd: ["nft", "list", "table", "ip", "plexd_stun"], result: ok("table ip plexd_stun {\n}\n") },
      { cmd: ["nft", "delete", "table", "ip", "plexd_stun"], result: ok() },
    ]);
    const res = await teardown(req, ctx);
    expect(runner.done).toBe(true);
    expect(res.removed).toEqual(["table ip plexd_stun"]);
    expect(res.errors).toHaveLength(3);
    expect(res.errors?.[0]).toMatch(/^list links: ip -j link show: exit 1: .*Permission denied/);
    expect(res.errors?.[1]).toMatch(/^routes: ip -batch -: exit 2: .*not permitted/);
    expect(res.errors?.[2]).toMatch(/^table inet plexd: nft delete table inet plexd: exit 1: .*busy/);
  });

  it("touches no table at all without nft", async () => {
    const { runner, teardown } = teardownWith([links("lo"), ipRead("plexd0", undefined), ipRead("lo", lo, hostRoutes), ...noRules], { host: new FakeHost() });
    expect(await teardown(req, ctx)).toEqual({ removed: [], errors: [] });
    expect(runner.done).toBe(true);
  });

  it("removes plexd-hooks.slice with a per-run cgroup its privhelper left, and says so when a running hook keeps it", async () => {
    const slice = join(dir, "cgroup", "plexd-hooks.slice");
    await mkdir(join(slice, "run-1-2-abc"), { recursive: true });
    const clean = teardownWith([links("lo"), ipRead("plexd0", undefined), ipRead("lo", lo, hostRoutes), ...noRules, ...nftTables(false, false)]);
    expect(await clean.teardown(req, ctx)).toEqual({ removed: ["cgroup plexd-hooks.slice"], errors: [] });
    expect(await readdir(join(dir, "cgroup"))).toEqual([]);
    // A cgroup with a process in it cannot be removed (EBUSY); a file stands in for it here.
    await mkdir(join(slice, "run-3-4-def"), { recursive: true });
    await writeFile(join(slice, "run-3-4-def", "cgroup.procs"), "1234\n");
    const busy = teardownWith([links("lo"), ipRead("plexd0", undefined), ipRead("lo", lo, hostRoutes), ...noRules, ...nftTables(false, false)]);
    const res = await busy.teardown(req, ctx);
    expect(res.removed).toEqual([]);
    expect(res.errors).toEqual([expect.stringMatching(/^cgroup plexd-hooks.slice: .*run-3-4-def/)]);
  });

  it.each(["mesh", "firewall", "stun"] as const)("waits for the %s lock: it never runs beside an apply or a probe", async (which) => {
    const locks = { mesh: createLock(), firewall: createLock(), stun: createLock() };
    let release = (): void => undefined;
    const busy = locks[which](() => new Promise<void>((r) => (release = r)));
    const { runner, teardown } = teardownWith([links("lo"), ipRead("plexd0", undefined), ipRead("lo", lo, hostRoutes), ...noRules, ...nftTables(false, false)], { locks });
    const done = teardown(req, ctx);
    await new Promise((r) => setTimeout(r, 20));
    expect(runner.ran).toEqual([]);
    release();
    await busy;
    expect(await done).toEqual({ removed: [], errors: [] });
    expect(runner.done).toBe(true);
  });
});
