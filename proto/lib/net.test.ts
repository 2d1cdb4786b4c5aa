import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { cidrContains, cidrOverlaps, parseCidr, parseHostPort, parseIp, parseIpEndpoint } from "./net.js";

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
  it("accepts DNS names only when asked", () => {
    expect(parseHostPort("Peer-1.Example.com:51820", { names: true })).toEqual({ host: "peer-1.example.com", family: undefined, port: 51820 });
    expect(parseHostPort("peer.example.com:51820")).toBeUndefined();
    expect(parseHostPort("1.2.3.999:1", { names: true })).toBeUndefined();
    expect(parseHostPort("bad_name:1", { names: true })).toBeUndefined();
  });
});
