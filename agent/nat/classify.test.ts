import { describe, expect, it } from "vitest";
import { classifyNat, localIPv4Addresses, needsSecondAnswer, type Classification, type ProbeAnswer } from "./classify.js";

const local = new Set(["127.0.0.1", "198.18.1.2", "192.0.2.10"]);
const mesh = (ip: string, port: number): ProbeAnswer => ({ mapped: { ip, port }, fromMeshPort: true });
const eph = (ip: string, port: number): ProbeAnswer => ({ mapped: { ip, port }, fromMeshPort: false });

describe("classifyNat", () => {
  const table: [string, ProbeAnswer, ProbeAnswer | undefined, Classification, boolean][] = [
    // name, first, second, expected, needs a second answer
    ["no NAT: local address, mesh port", mesh("192.0.2.10", 51820), undefined, { type: "none", publicEndpoint: "192.0.2.10:51820" }, false],
    ["port-preserving NAT: mesh port but foreign address, no second", mesh("203.0.113.5", 51820), undefined, { type: "unknown", publicEndpoint: "203.0.113.5:51820" }, true],
    ["port-preserving NAT, same mapping twice", mesh("203.0.113.5", 51820), mesh("203.0.113.5", 51820), { type: "full_cone", publicEndpoint: "203.0.113.5:51820" }, true],
    ["cone NAT with a rewritten port", mesh("203.0.113.5", 40001), mesh("203.0.113.5", 40001), { type: "full_cone", publicEndpoint: "203.0.113.5:40001" }, true],
    ["symmetric: other port", mesh("203.0.113.5", 40001), mesh("203.0.113.5", 40002), { type: "symmetric", publicEndpoint: "203.0.113.5:40001" }, true],
    ["symmetric: other address", mesh("203.0.113.5", 40001), mesh("203.0.113.6", 40001), { type: "symmetric", publicEndpoint: "203.0.113.5:40001" }, true],
    ["local address but another port (local SNAT): compared like a NAT", mesh("192.0.2.10", 40000), mesh("192.0.2.10", 40000), { type: "full_cone", publicEndpoint: "192.0.2.10:40000" }, true],
    ["second answer from an ephemeral port is not comparable", mesh("203.0.113.5", 40001), eph("203.0.113.5", 33333), { type: "unknown", publicEndpoint: "203.0.113.5:40001" }, true],
    ["fallback, local address: none at the listen port", eph("198.18.1.2", 38211), undefined, { type: "none", publicEndpoint: "198.18.1.2:51820" }, false],
    ["fallback, local address, second ignored", eph("198.18.1.2", 38211), eph("198.18.1.2", 38212), { type: "none", publicEndpoint: "198.18.1.2:51820" }, false],
    ["fallback behind NAT: unknown, no usable endpoint", eph("203.0.113.5", 38211), undefined, { type: "unknown", publicEndpoint: undefined }, false],
    ["fallback behind NAT, second from the mesh port changes nothing", eph("203.0.113.5", 38211), mesh("203.0.113.5", 51820), { type: "unknown", publicEndpoint: undefined }, false],
  ];
  it.each(table)("%s", (_name, first, second, expected, needsSecond) => {
    expect(classifyNat(first, second, 51820, local)).toEqual(expected);
    expect(needsSecondAnswer(first, 51820, local)).toBe(needsSecond);
  });

  it("honours the configured listen port", () => {
    expect(classifyNat(mesh("192.0.2.10", 51820), undefined, 40000, local).type).toBe("unknown");
    expect(classifyNat(mesh("192.0.2.10", 40000), undefined, 40000, local)).toEqual({ type: "none", publicEndpoint: "192.0.2.10:40000" });
    expect(classifyNat(eph("192.0.2.10", 5), undefined, 40000, local).publicEndpoint).toBe("192.0.2.10:40000");
  });
});

describe("localIPv4Addresses", () => {
  it("collects IPv4 addresses of every interface, skipping IPv6", () => {
    const base = { netmask: "", mac: "", internal: false, cidr: null };
    const set = localIPv4Addresses({
      lo: [{ ...base, address: "127.0.0.1", family: "IPv4", internal: true }],
      eth0: [
        { ...base, address: "198.18.1.2", family: "IPv4" },
        { ...base, address: "fe80::1", family: "IPv6", scopeid: 2 },
      ],
      eth1: undefined,
    });
    expect([...set].sort()).toEqual(["127.0.0.1", "198.18.1.2"]);
  });

  it("sees this machine's loopback by default", () => {
    expect(localIPv4Addresses().has("127.0.0.1")).toBe(true);
  });
});
