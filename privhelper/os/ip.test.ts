import { describe, expect, it } from "vitest";
import { kernelPrefixRoutes, parseProcRoutes } from "./ip.js";

// Rows as a little-endian kernel prints them (captured from a namespace with a wireguard-go
// device: its address 100.64.0.1/10, two peer routes, one route via a gateway), padded to
// 127 characters like the real table.
const pad = (l: string) => l.padEnd(127) + "\n";
const table = [
  "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT",
  "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0",
  "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0",
  "plexd0\t00004064\t00000000\t0001\t0\t0\t0\t0000C0FF\t0\t0\t0",
  "plexd0\t01004164\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0",
  "plexd0\t87004164\t00000000\t0005\t0\t0\t100\tFFFFFFFF\t0\t0\t0",
  "plexd0\t00000A0A\t0A004064\t0003\t0\t0\t0\t0000FFFF\t0\t0\t0",
  "plexd01\t02004164\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0",
]
  .map(pad)
  .join("");

describe("parseProcRoutes", () => {
  it("reads the routes via one device as CIDRs, leaving out the kernel's prefix routes", () => {
    expect(parseProcRoutes(table, "plexd0", kernelPrefixRoutes(["100.64.0.1/10"]), true)).toEqual(["100.65.0.1/32", "100.65.0.135/32", "10.10.0.0/16"]);
  });

  it("keeps a prefix route when no address of the device makes it", () => {
    expect(parseProcRoutes(table, "plexd0", new Set(), true)).toContain("100.64.0.0/10");
  });

  it("skips default routes and other devices, including one whose name extends ours", () => {
    expect(parseProcRoutes(table, "eth0", new Set(), true)).toEqual(["192.0.2.0/24"]);
    expect(parseProcRoutes(table, "plexd01", new Set(), true)).toEqual(["100.65.0.2/32"]);
    expect(parseProcRoutes(table, "plexd9", new Set(), true)).toEqual([]);
  });

  it("reads a big-endian kernel's table in its own byte order", () => {
    const be = pad("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT") + pad("plexd0\t64410001\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0");
    expect(parseProcRoutes(be, "plexd0", new Set(), false)).toEqual(["100.65.0.1/32"]);
  });

  it("copes with an empty table, a missing final newline and a malformed row", () => {
    expect(parseProcRoutes("", "plexd0", new Set(), true)).toEqual([]);
    expect(parseProcRoutes("Iface\tDestination\n", "plexd0", new Set(), true)).toEqual([]);
    expect(parseProcRoutes("Iface\nplexd0\t01004164\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0", "plexd0", new Set(), true)).toEqual(["100.65.0.1/32"]);
    expect(parseProcRoutes("Iface\nplexd0\tzz\t00000000\n", "plexd0", new Set(), true)).toEqual([]);
  });
});

describe("kernelPrefixRoutes", () => {
  it("names the network of each IPv4 address; a /32 and IPv6 make none here", () => {
    expect([...kernelPrefixRoutes(["100.64.0.1/10", "10.1.2.3/32", "fd00::1/64", "192.168.7.9/24", "10.1.255.254/15"])]).toEqual(["100.64.0.0/10", "192.168.7.0/24", "10.0.0.0/15"]);
  });
});
