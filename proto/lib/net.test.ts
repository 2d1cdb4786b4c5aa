import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { isIPv4 } from "node:net";
import {
  cidr4Contains,
  cidr4Text,
  cidrContains,
  cidrOverlaps,
  formatIPv4Int,
  ipFromBytes,
  ipv4Mask,
  isLoopbackHost,
  isMeshIp,
  parseCidr,
  parseHostPort,
  parseIPv4Int,
  parseIp,
  parseIpEndpoint,
  parsePrefixLength,
} from "./net.js";

describe("parseIp", () => {
  it.each([
    ["10.0.0.1", "10.0.0.1"],
    ["0.0.0.0", "0.0.0.0"],
    ["FD00:0:0::01", "fd00::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["::ffff:1.2.3.4", "::ffff:102:304"],
    ["::", "::"],
  ])("canonicalises %s", (s, text) => {
    expect(parseIp(s)?.text).toBe(text);
  });
  it.each(["010.0.0.1", "1.2.3", "1.2.3.256", "0x7f.0.0.1", " 10.0.0.1", "fe80::1%eth0", "[::1]", "", "1.2.3.4\n"])("refuses %j", (s) => {
    expect(parseIp(s)).toBeUndefined();
  });
  it("round-trips every IPv6 value through its canonical text", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }), (v) => {
        const groups = Array.from({ length: 8 }, (_, i) => ((v >> BigInt(16 * (7 - i))) & 0xffffn).toString(16));
        const ip = parseIp(groups.join(":"));
        expect(ip?.value).toBe(v);
        expect(parseIp(ip!.text)?.text).toBe(ip!.text);
      }),
    );
  });
});

describe("parseCidr", () => {
  it("masks host bits for networks and keeps them for addresses", () => {
    expect(parseCidr("10.100.1.5/24", true)?.cidr).toBe("10.100.1.0/24");
    expect(parseCidr("10.100.1.5/24", false)?.cidr).toBe("10.100.1.5/24");
    expect(parseCidr("fd00::1:2/112", true)?.cidr).toBe("fd00::1:0/112");
    expect(parseCidr("0.0.0.0/0", true)?.cidr).toBe("0.0.0.0/0");
    expect(parseCidr("::/0", true)?.cidr).toBe("::/0");
  });
  it.each(["10.0.0.0", "10.0.0.0/33", "10.0.0.0/08", "fd00::/129", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/24 accept"])("refuses %j", (s) => {
    expect(parseCidr(s, true)).toBeUndefined();
  });
  it("tells containment and overlap", () => {
    const c = (s: string) => parseCidr(s, true)!;
    expect(cidrContains(c("10.0.0.0/8"), c("10.1.0.0/16"))).toBe(true);
    expect(cidrContains(c("10.1.0.0/16"), c("10.0.0.0/8"))).toBe(false);
    expect(cidrOverlaps(c("10.1.0.0/16"), c("10.0.0.0/8"))).toBe(true);
    expect(cidrOverlaps(c("10.1.0.0/16"), c("10.2.0.0/16"))).toBe(false);
    expect(cidrOverlaps(c("10.0.0.0/8"), c("fd00::/8"))).toBe(false);
  });
});

describe("host:port", () => {
  it("parses IP endpoints canonically", () => {
    expect(parseIpEndpoint("192.0.2.1:51820")).toBe("192.0.2.1:51820");
    expect(parseIpEndpoint("[FD00::1]:51820")).toBe("[fd00::1]:51820");
    for (const bad of ["fd00::1:51820", "192.0.2.1:0", "192.0.2.1:65536", "192.0.2.1:051820", "host.example:1", "192.0.2.1:1\n"]) expect(parseIpEndpoint(bad)).toBeUndefined();
  });
  it("accepts port 0 only when asked", () => {
    expect(parseHostPort("127.0.0.1:0")).toBeUndefined();
    expect(parseHostPort("127.0.0.1:0", { anyPort: true })).toEqual({ host: "127.0.0.1", family: 4, port: 0 });
    expect(parseHostPort("127.0.0.1:00", { anyPort: true })).toBeUndefined();
  });
  it("accepts DNS names only when asked", () => {
    expect(parseHostPort("Peer-1.Example.com:51820", { names: true })).toEqual({ host: "peer-1.example.com", family: undefined, port: 51820 });
    expect(parseHostPort("peer.example.com:51820")).toBeUndefined();
    expect(parseHostPort("1.2.3.999:1", { names: true })).toBeUndefined();
    expect(parseHostPort("bad_name:1", { names: true })).toBeUndefined();
  });
});

describe("IPv4 as a number", () => {
  it("parses exactly what node:net calls IPv4, and formats it back", () => {
    for (const ok of ["0.0.0.0", "10.100.1.5", "255.255.255.255", "192.0.2.1"]) expect(formatIPv4Int(parseIPv4Int(ok)!)).toBe(ok);
    expect(parseIPv4Int("10.100.0.0")).toBe(0x0a640000);
    expect(parseIPv4Int("255.255.255.255")).toBe(0xffffffff);
    for (const bad of ["010.0.0.1", "1.2.3", "1.2.3.4.", ".1.2.3.4", "1..2.3", "1.2.3.256", "1.2.3.4.5", "1.2.3.-4", " 1.2.3.4", "1.2.3.4 ", "1234.1.1.1", "a.b.c.d", "", "::1"]) {
      expect(parseIPv4Int(bad), bad).toBeUndefined();
    }
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.string({ unit: fc.constantFrom("0", "1", "2", "5", "9", ".", "x"), maxLength: 16 })), (s) => {
        const v = parseIPv4Int(s);
        expect(v !== undefined).toBe(isIPv4(s));
        if (v !== undefined) expect(formatIPv4Int(v)).toBe(s);
      }),
    );
  });

  it("masks, contains and prints prefixes", () => {
    expect(ipv4Mask(0)).toBe(0);
    expect(ipv4Mask(16)).toBe(0xffff0000);
    expect(ipv4Mask(32)).toBe(0xffffffff);
    const c = { network: parseIPv4Int("10.100.0.0")!, bits: 16 };
    expect(cidr4Contains(c, parseIPv4Int("10.100.255.1")!)).toBe(true);
    expect(cidr4Contains(c, parseIPv4Int("10.101.0.1")!)).toBe(false);
    expect(cidr4Contains({ network: 0, bits: 0 }, 0xffffffff)).toBe(true);
    expect(cidr4Text(c)).toBe("10.100.0.0/16");
  });

  it("agrees with the BigInt CIDRs", () => {
    fc.assert(
      fc.property(fc.ipV4(), fc.ipV4(), fc.integer({ min: 0, max: 32 }), (net, ip, bits) => {
        const outer = parseCidr(`${net}/${bits}`, true)!;
        const inner = parseCidr(`${ip}/32`, true)!;
        expect(cidr4Contains({ network: Number(outer.value), bits }, parseIPv4Int(ip)!)).toBe(cidrContains(outer, inner));
      }),
    );
  });

  it("knows the mesh range", () => {
    expect(isMeshIp("10.100.1.1")).toBe(true);
    expect(isMeshIp("10.100.255.255")).toBe(true);
    for (const bad of ["10.101.0.1", "10.100.1", "10.100.01.1", "fd00::1", "10.100.1.1/32"]) expect(isMeshIp(bad), bad).toBe(false);
  });
});

describe("ipFromBytes", () => {
  it("prints addresses in network order canonically", () => {
    expect(ipFromBytes(Uint8Array.from([192, 0, 2, 1]))).toBe("192.0.2.1");
    expect(ipFromBytes(Uint8Array.from([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]))).toBe("2001:db8::1:0:0:1");
    expect(ipFromBytes(new Uint8Array(16))).toBe("::");
    expect(ipFromBytes(new Uint8Array(5))).toBeUndefined();
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (b) => {
        const text = ipFromBytes(b)!;
        expect(parseIp(text)?.text).toBe(text);
        expect(parseIp(text)?.value).toBe(BigInt(`0x${Buffer.from(b).toString("hex")}`));
      }),
    );
  });
});

describe("prefix lengths and loopback hosts", () => {
  it("parses prefix lengths by family", () => {
    expect(parsePrefixLength("32", 4)).toBe(32);
    expect(parsePrefixLength("0", 6)).toBe(0);
    expect(parsePrefixLength("128", 6)).toBe(128);
    for (const [t, f] of [["33", 4], ["129", 6], ["08", 4], ["-1", 4], ["", 4], ["1e1", 4]] as const) expect(parsePrefixLength(t, f), t).toBeUndefined();
  });

  it("tells loopback hosts", () => {
    expect(["localhost", "LOCALHOST", "localhost.", "127.0.0.1", "127.255.0.3", "::1", "[::1]", "0:0::1"].every(isLoopbackHost)).toBe(true);
    expect(["10.0.0.1", "localhost.example", "[::]", "::", "0.0.0.0", "1270.0.0.1", "127.0.0.01", "128.0.0.1", "[::2]"].some(isLoopbackHost)).toBe(false);
  });
});
