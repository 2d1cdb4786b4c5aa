// The iproute2 side of privhelper: what `ip -N -d -j` prints, read back, and the exact commands
// ipTool runs. testdata/ip-read-*.txt are what iproute2 6.1 printed for ipTool.read's batch in a
// fresh namespace: a veth d0 (mtu 1400, 10.100.0.1/24, fd00::1/64), routes of proto 80 (one of
// them in table 100, one a blackhole), routes of proto boot, the kernel's prefix routes, a
// default route; and the same batch asking for a missing plexd0.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { fail, ok, TranscriptRunner } from "../../test/support/transcript.js";
import { ipRead, ipReadCmd, ipReadInput } from "../../test/support/privhelper.js";
import { ipTool, parseLink, parseRoutes, routeLine, routeProtocol, tunnelRules } from "./ip.js";

const data = (f: string) => readFileSync(join(import.meta.dirname, "testdata", f), "utf8");
const [v4, v6, link] = data("ip-read-veth.txt").split("\n");

describe("parseRoutes (recorded `ip -N -d -j route show table all`)", () => {
  it("keeps main-table unicast routes with canonical destinations, and tells privhelper's by protocol 80", () => {
    // The main table's default route is the uplink's: privhelper's default routes live in the full-tunnel table.
    expect(parseRoutes(v4!, false, 51820)).toEqual([
      { dst: "10.100.0.0/24", dev: "d0", plexd: false },
      { dst: "10.100.1.0/24", dev: "d0", plexd: true },
      { dst: "10.100.2.5/32", dev: "d0", plexd: true },
      { dst: "10.100.3.0/24", dev: "d0", plexd: false },
    ]);
    expect(parseRoutes(v6!, true, 51820)).toEqual([
      { dst: "fd00::/64", dev: "d0", plexd: false },
      { dst: "fd01::/64", dev: "d0", plexd: true },
      { dst: "fe80::/64", dev: "d0", plexd: false },
      { dst: "fe80::/64", dev: "d1", plexd: false },
    ]);
  });

  it("leaves out other tables, local/broadcast/blackhole types, even with protocol 80", () => {
    const all = [...parseRoutes(v4!, false, 51820), ...parseRoutes(v6!, true, 51820)].map((r) => r.dst);
    for (const gone of ["10.8.0.0/16", "10.9.0.0/16", "10.100.0.1/32", "127.0.0.1/32", "ff00::/8", "::1/128"]) expect(all).not.toContain(gone);
  });

  it("names the IPv6 default route ::/0, takes default routes from the full-tunnel table only, and copes with empty answers", () => {
    const rows = [
      { type: "1", dst: "default", dev: "eth0", table: "254", protocol: "3" },
      { type: "1", dst: "default", dev: "plexd0", table: "51820", protocol: "80" },
      { type: "1", dst: "default", dev: "wg0", table: "51821", protocol: "3" },
      { type: "1", dst: "10.0.0.0/8", dev: "plexd0", table: "51820", protocol: "80" },
    ];
    expect(parseRoutes(JSON.stringify(rows), true, 51820)).toEqual([{ dst: "::/0", dev: "plexd0", plexd: true }]);
    expect(parseRoutes(JSON.stringify(rows), false, 51821)).toEqual([{ dst: "0.0.0.0/0", dev: "wg0", plexd: false }]);
    expect(parseRoutes("", false, 51820)).toEqual([]);
    expect(parseRoutes("[]", true, 51820)).toEqual([]);
  });

  it("re-parses destinations: what reaches a route line is canonical text", () => {
    const rows = [
      { type: "1", dst: "FD02:0::1", dev: "plexd0", table: "254", protocol: "80" },
      { type: "1", dst: "10.1.2.3/8", dev: "plexd0", table: "254", protocol: "80" },
      { type: "1", dst: "not-an-ip", dev: "plexd0", table: "254", protocol: "80" },
    ];
    expect(parseRoutes(JSON.stringify(rows.slice(1)), false, 51820)).toEqual([{ dst: "10.0.0.0/8", dev: "plexd0", plexd: true }]);
    expect(parseRoutes(JSON.stringify(rows.slice(0, 1)), true, 51820)).toEqual([{ dst: "fd02::1/128", dev: "plexd0", plexd: true }]);
  });
});

describe("parseLink (recorded `ip -N -d -j addr show`)", () => {
  it("reads name, kind, state, mtu and the global addresses with host bits, not the link-local one", () => {
    expect(parseLink(link!)).toEqual({ name: "d0", kind: "veth", up: true, mtu: 1400, addresses: ["10.100.0.1/24", "fd00::1/64"] });
  });

  it("a down link, a host-scope address, and no answer at all", () => {
    const down = JSON.stringify([{ ifname: "plexd0", flags: ["POINTOPOINT", "NOARP"], mtu: 1420, linkinfo: { info_kind: "tun" }, addr_info: [{ local: "10.100.0.1", prefixlen: 32, scope: "254" }, { local: "FD00::0001", prefixlen: 128, scope: "0" }] }]);
    expect(parseLink(down)).toEqual({ name: "plexd0", kind: "tun", up: false, mtu: 1420, addresses: ["fd00::1/128"] });
    expect(parseLink("")).toBeUndefined();
    expect(parseLink("[]")).toBeUndefined();
  });
});

describe("ipTool", () => {
  it("read: one `ip -batch` for both route families and the link, numbers not names", async () => {
    const runner = new TranscriptRunner([{ cmd: ipReadCmd, input: ipReadInput("d0"), result: ok(data("ip-read-veth.txt")) }]);
    const r = await ipTool(runner, 51820).read("d0");
    expect(runner.done).toBe(true);
    expect(r.link?.addresses).toEqual(["10.100.0.1/24", "fd00::1/64"]);
    expect(r.routes.filter((x) => x.plexd).map((x) => x.dst)).toEqual(["10.100.1.0/24", "10.100.2.5/32", "fd01::/64"]);
  });

  it("read: a missing link is no link, and the routes are still read (ip -force goes on)", async () => {
    const runner = new TranscriptRunner([{ cmd: ipReadCmd, input: ipReadInput("plexd0"), result: { stdout: data("ip-read-missing.txt"), stderr: 'Device "plexd0" does not exist.\nCommand failed -:3\n', exitCode: 1 } }]);
    const r = await ipTool(runner, 51820).read("plexd0");
    expect(r.link).toBeUndefined();
    expect(r.routes.filter((x) => x.plexd).map((x) => x.dst)).toEqual(["10.100.1.0/24", "10.100.2.5/32", "fd01::/64"]);
  });

  it("read passes the caller's signal (a read may be cancelled)", async () => {
    const runner = new TranscriptRunner([ipRead("plexd0", undefined)]);
    await ipTool(runner, 51820).read("plexd0", new AbortController().signal);
    expect(runner.ran[0]?.signal).toBe(true);
  });

  it("batch: rendered lines on stdin, in one run, nothing for no lines, a failure throws", async () => {
    const runner = new TranscriptRunner([
      { cmd: ["ip", "-batch", "-"], input: "link set plexd0 mtu 1420\nlink set plexd0 up\n", result: ok() },
      { cmd: ["ip", "-batch", "-"], result: fail("RTNETLINK answers: File exists\nCommand failed -:1\n", 1) },
    ]);
    const ip = ipTool(runner, 51820);
    await ip.batch(["link set plexd0 mtu 1420", "link set plexd0 up"]);
    await ip.batch([]);
    await expect(ip.batch([routeLine("add", "10.0.0.0/8", "plexd0", 51820)])).rejects.toMatchObject({ code: "internal", message: expect.stringContaining("File exists") });
    expect(runner.done).toBe(true);
    expect(runner.ran.every((r) => !r.signal)).toBe(true);
  });

  it("addWireGuard: false when the kernel has no WireGuard; links; del", async () => {
    const runner = new TranscriptRunner([
      { cmd: ["ip", "link", "add", "plexd0", "type", "wireguard"], result: fail("Error: Unknown device type.\n", 2) },
      { cmd: ["ip", "link", "add", "plexd0", "type", "wireguard"], result: ok() },
      { cmd: ["ip", "-j", "link", "show"], result: ok(JSON.stringify([{ ifindex: 1, ifname: "lo" }, { ifindex: 2, ifname: "plexd0" }, { ifindex: 3 }])) },
      { cmd: ["ip", "link", "del", "plexd0"], result: ok() },
    ]);
    const ip = ipTool(runner, 51820);
    expect(await ip.addWireGuard("plexd0")).toBe(false);
    expect(await ip.addWireGuard("plexd0")).toBe(true);
    expect(await ip.links()).toEqual(["lo", "plexd0"]);
    await ip.del("plexd0");
    expect(runner.done).toBe(true);
  });

  it("routeLine: every route privhelper adds or removes carries its protocol", () => {
    expect(routeProtocol).toBe(80);
    expect(routeLine("add", "10.100.0.3/32", "plexd0", 51820)).toBe("route add 10.100.0.3/32 dev plexd0 proto 80");
    expect(routeLine("del", "fd00::/64", "plexd0", 51820)).toBe("route del fd00::/64 dev plexd0 proto 80");
    // Default routes go to the full-tunnel table, never to main.
    expect(routeLine("add", "0.0.0.0/0", "plexd0", 51820)).toBe("route add 0.0.0.0/0 dev plexd0 table 51820 proto 80");
    expect(routeLine("del", "::/0", "plexd0", 7)).toBe("route del ::/0 dev plexd0 table 7 proto 80");
  });

  it("rules: privhelper's policy rules of both families (recorded `ip -N -j rule show`), in tunnelRules' words; batch takes a family", async () => {
    const v4rules = [
      { priority: 0, src: "all", table: "255" },
      { priority: 32764, src: "all", table: "254", suppress_prefixlen: 0, protocol: "80" },
      { priority: 32765, not: null, src: "all", fwmark: "0xca6c", table: "51820", protocol: "80" },
      { priority: 32766, src: "all", table: "254" },
      { priority: 100, src: "all", fwmark: "0x1", table: "7", protocol: "80" },
    ];
    const v6rules = [{ priority: 32765, not: null, src: "all", fwmark: "0xca6c", table: "51820", protocol: "80" }, { priority: 32766, src: "all", table: "254" }];
    const runner = new TranscriptRunner([
      { cmd: ["ip", "-N", "-j", "-4", "rule", "show"], result: ok(JSON.stringify(v4rules)) },
      { cmd: ["ip", "-N", "-j", "-6", "rule", "show"], result: ok(JSON.stringify(v6rules)) },
      { cmd: ["ip", "-6", "-batch", "-"], input: "rule add table 254 suppress_prefixlength 0 protocol 80\n", result: ok() },
    ]);
    const ip = ipTool(runner, 51820);
    expect(await ip.rules()).toEqual([
      { family: 4, priority: 32764, rule: tunnelRules(51820)[1] },
      { family: 4, priority: 32765, rule: tunnelRules(51820)[0] },
      { family: 4, priority: 100, rule: "fwmark 1 table 7" },
      { family: 6, priority: 32765, rule: "not fwmark 51820 table 51820" },
    ]);
    await ip.batch(["rule add table 254 suppress_prefixlength 0 protocol 80"], 6);
    expect(runner.done).toBe(true);
  });

  it("rules: a family the kernel has switched off (ipv6.disable=1) has none", async () => {
    const runner = new TranscriptRunner([
      { cmd: ["ip", "-N", "-j", "-4", "rule", "show"], result: ok("[]") },
      { cmd: ["ip", "-N", "-j", "-6", "rule", "show"], result: fail("RTNETLINK answers: Address family not supported by protocol\nDump terminated\n", 2) },
    ]);
    expect(await ipTool(runner, 51820).rules()).toEqual([]);
  });
});
