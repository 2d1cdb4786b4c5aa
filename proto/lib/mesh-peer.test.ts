import { describe, expect, it } from "vitest";
import { checkMeshPeer, checkUniquePeers, routeRefusal, type RoutePolicy } from "./mesh-peer.js";

// The shared peer rules on their own; that the agent's admission and privhelper agree on every
// input is test/fuzz/peer-admission.fuzz.test.ts's job.

const key = (n: number) => Buffer.alloc(32, n).toString("base64");
const strict: RoutePolicy = { allowDefaultRoute: false, minRoutePrefix: { 4: 8, 6: 16 } };

function issues(p: Partial<Parameters<typeof checkMeshPeer>[0]>, policy = strict): string[] {
  const out: string[] = [];
  checkMeshPeer({ publicKey: key(1), presharedKey: "", endpoint: "", allowedIps: [], persistentKeepalive: 25, ...p }, policy, "p", (path, msg) => out.push(`${path}: ${msg}`));
  return out;
}

describe("checkMeshPeer", () => {
  it("canonicalises what it accepts", () => {
    const r = checkMeshPeer({ publicKey: key(1), presharedKey: key(2), endpoint: "[2001:DB8:0::1]:51820", allowedIps: ["10.1.2.3/24", "10.1.2.0/24"], persistentKeepalive: 0 }, strict, "p", () => {
      throw new Error("no issue expected");
    });
    expect(r).toEqual({ publicKey: key(1), presharedKey: key(2), endpoint: "[2001:db8::1]:51820", allowedIps: ["10.1.2.0/24"], keepalive: 0 });
  });

  it("names every problem with its field", () => {
    expect(issues({ publicKey: "x", presharedKey: "y", endpoint: "host.example:1", persistentKeepalive: 70000, allowedIps: ["nope", "0.0.0.0/0"] })).toEqual([
      "p.public_key: must be a 32-byte base64 key",
      "p.preshared_key: must be empty or a 32-byte base64 key",
      "p.endpoint: must be empty or IP:port / [IPv6]:port",
      "p.persistent_keepalive: must be 0-65535",
      "p.allowed_ips[0]: must be an IPv4 or IPv6 CIDR",
      "p.allowed_ips[1]: 0.0.0.0/0 is shorter than /8 (mesh.min_route_prefix_v4); refused unless mesh.allow_default_route is true",
    ]);
    expect(issues({ allowedIps: Array.from({ length: 1025 }, (_, i) => `10.9.${i >> 8}.${i & 255}/32`) })).toEqual(["p.allowed_ips: at most 1024"]);
  });

  it("routes short prefixes only with allow_default_route", () => {
    expect(routeRefusal({ family: 6, bits: 0, cidr: "::/0" }, strict)).toMatch(/min_route_prefix_v6/);
    expect(routeRefusal({ family: 4, bits: 8, cidr: "10.0.0.0/8" }, strict)).toBeUndefined();
    expect(issues({ allowedIps: ["0.0.0.0/0", "::/0"] }, { ...strict, allowDefaultRoute: true })).toEqual([]);
  });
});

describe("checkUniquePeers", () => {
  it("refuses a second holder of a key or an identical prefix", () => {
    const out: string[] = [];
    checkUniquePeers(
      [
        { publicKey: key(1), allowedIps: ["10.0.0.1/32"] },
        { publicKey: key(1), allowedIps: ["10.0.0.2/32"] },
        { publicKey: key(3), allowedIps: ["10.0.0.1/32"] },
      ],
      (path, msg) => out.push(`${path}: ${msg}`),
      (i) => `peers[${i}]`,
    );
    expect(out).toEqual(["peers[1].public_key: duplicate peer", "peers[2].allowed_ips: 10.0.0.1/32 is also claimed by peers[0]"]);
  });
});
