// Allow-list validation of MeshSpec (the IP/CIDR/endpoint parsers themselves are tested in
// proto/lib/net.test.ts): every field parsed and re-serialised, every problem reported at once.
import { create } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MeshSpecSchema } from "../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../proto/lib/errors.js";
import { key } from "../test/support/privhelper.js";
import { privConfigFrom } from "./config.js";
import type { WgPeer } from "./os/wg.js";
import { isKey32 as isKey } from "../proto/lib/keys.js";
import { checkUniquePeers } from "../proto/lib/mesh-peer.js";
import { Issues, checkInterface, validateMeshSpec } from "./validate.js";

const [priv, k2, k3] = [key(7), key(9), key(11)];
const cfg = privConfigFrom({ mesh: { interface: "plexd0" } });
const spec = (over: object = {}) =>
  create(MeshSpecSchema, {
    interface: "plexd0",
    privateKey: priv,
    listenPort: 51820,
    addresses: ["10.100.0.1/32"],
    peers: [{ publicKey: k2, allowedIps: ["10.100.0.2/32"], endpoint: "192.0.2.2:51820", persistentKeepalive: 25 }],
    ...over,
  });

function issuesOf(over: object, config = cfg): string {
  try {
    validateMeshSpec(config, spec(over));
  } catch (err) {
    expect(err).toBeInstanceOf(PlexdError);
    expect((err as PlexdError).code).toBe("invalid_argument");
    return (err as Error).message;
  }
  throw new Error("expected invalid_argument");
}

describe("isKey", () => {
  it("accepts exactly the canonical base64 of 32 bytes", () => {
    expect(isKey(priv)).toBe(true);
    for (let n = 0; n < 256; n += 17) expect(isKey(Buffer.alloc(32, n).toString("base64"))).toBe(true);
    expect(isKey(priv.slice(0, -2) + "B=")).toBe(false); // non-zero padding bits: another spelling of a key
    expect(isKey(Buffer.alloc(31).toString("base64"))).toBe(false);
    expect(isKey(Buffer.alloc(33).toString("base64"))).toBe(false);
    expect(isKey(`${priv}\n`)).toBe(false);
    expect(isKey(priv.replace("=", ""))).toBe(false);
    expect(isKey("-".repeat(43) + "=")).toBe(false);
    expect(isKey(Buffer.alloc(32, 0xfb).toString("base64url") + "=")).toBe(false);
  });

  it("agrees with Node's decoder: a key passes only if it decodes to 32 bytes and re-encodes to itself (property)", () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(..."AEIMQUYcgkosw048ABab+/=\n".split("")), minLength: 42, maxLength: 46 }), (s) => {
        const bytes = Buffer.from(s, "base64");
        expect(isKey(s)).toBe(bytes.length === 32 && bytes.toString("base64") === s);
      }),
    );
  });
});

describe("validateMeshSpec", () => {
  it("accepts and normalises a good spec: canonical CIDRs and endpoints, sorted, deduplicated allowed IPs", () => {
    const d = validateMeshSpec(
      cfg,
      spec({
        addresses: ["FD00::0001/64", "10.100.0.1/16"],
        peers: [{ publicKey: k2, allowedIps: ["10.100.0.9/16", "10.100.0.9/16", "FD00:0::9/128"], endpoint: "[FD00::0002]:51820", presharedKey: k3 }],
      }),
    );
    expect(d).toEqual({
      interface: "plexd0",
      privateKey: priv,
      listenPort: 51820,
      fwmark: 0,
      mtu: 0,
      addresses: ["10.100.0.1/16", "fd00::1/64"],
      peers: [{ publicKey: k2, presharedKey: k3, endpoint: "[fd00::2]:51820", allowedIps: ["10.100.0.0/16", "fd00::9/128"], keepalive: 0 }],
    });
  });

  it("an empty endpoint (it roams), no PSK and no allowed IPs are fine", () => {
    const d = validateMeshSpec(cfg, spec({ peers: [{ publicKey: k2 }] }));
    expect(d.peers).toEqual([{ publicKey: k2, presharedKey: "", endpoint: "", allowedIps: [], keepalive: 0 }]);
  });

  it.each([
    [{ interface: "eth0" }, "spec.interface"],
    [{ interface: "plexd1" }, "spec.interface"],
    [{ interface: "plexd0;reboot" }, "spec.interface"],
    [{ interface: "plexd0 " }, "spec.interface"],
    [{ privateKey: "nope" }, "spec.private_key"],
    [{ privateKey: "" }, "spec.private_key"],
    [{ listenPort: 0 }, "spec.listen_port"],
    [{ listenPort: 70000 }, "spec.listen_port"],
    [{ mtu: 100 }, "spec.mtu"],
    [{ mtu: 9001 }, "spec.mtu"],
    [{ addresses: ["10.100.0.1"] }, "spec.addresses[0]"],
    [{ addresses: ["10.100.0.1/32", "10.100.0.1/32"] }, "spec.addresses: duplicates"],
    [{ addresses: Array.from({ length: 17 }, (_, i) => `10.0.0.${i}/32`) }, "spec.addresses: at most 16"],
    [{ peers: [{ publicKey: "x" }] }, "spec.peers[0].public_key"],
    [{ peers: [{ publicKey: k2, allowedIps: ["10.1.0.0/99"] }] }, "spec.peers[0].allowed_ips[0]"],
    [{ peers: [{ publicKey: k2, allowedIps: ["10.1.0.0/8 dev eth0"] }] }, "spec.peers[0].allowed_ips[0]"],
    [{ peers: [{ publicKey: k2, allowedIps: Array.from({ length: 1025 }, (_, i) => `10.0.${i >> 8}.${i & 255}/32`) }] }, "spec.peers[0].allowed_ips: at most 1024"],
    [{ peers: [{ publicKey: k2, presharedKey: "x" }] }, "spec.peers[0].preshared_key"],
    [{ peers: [{ publicKey: k2, endpoint: "peer.example.com:51820" }] }, "spec.peers[0].endpoint"],
    [{ peers: [{ publicKey: k2, endpoint: "192.0.2.1:0" }] }, "spec.peers[0].endpoint"],
    [{ peers: [{ publicKey: k2, persistentKeepalive: 70000 }] }, "spec.peers[0].persistent_keepalive"],
    [{ peers: [{ publicKey: k2 }, { publicKey: k2 }] }, "spec.peers[1].public_key: duplicate"],
    [{ peers: [{ publicKey: k2, allowedIps: ["10.0.0.1/32"] }, { publicKey: k3, allowedIps: ["10.0.0.1/32"] }] }, "spec.peers[1].allowed_ips: 10.0.0.1/32 is also claimed by spec.peers[0]"],
    // The same prefix in two spellings is the same prefix.
    [{ peers: [{ publicKey: k2, allowedIps: ["10.0.0.0/8"] }, { publicKey: k3, allowedIps: ["10.9.9.9/8"] }] }, "10.0.0.0/8 is also claimed"],
  ])("rejects %j", (over, where) => {
    expect(issuesOf(over)).toContain(where);
  });

  it("reports every problem at once", () => {
    const msg = issuesOf({ interface: "eth0", privateKey: "x", listenPort: 0 });
    expect(msg).toMatch(/spec\.interface[\s\S]*spec\.private_key[\s\S]*spec\.listen_port/);
  });

  it("says nothing about an interface name beyond its first 40 characters", () => {
    expect(issuesOf({ interface: "x".repeat(5000) }).length).toBeLessThan(300);
  });

  it("bounds the peer count before looking at any peer", () => {
    const peers = Array.from({ length: 20_001 }, () => ({ publicKey: "bad" }));
    const msg = issuesOf({ peers });
    expect(msg).toContain("at most 20000 peers (got 20001)");
    expect(msg).not.toContain("public_key");
  });

  it("an absent spec is invalid", () => {
    expect(() => validateMeshSpec(cfg, undefined)).toThrow(/spec: required/);
  });

  it("refuses a default route unless mesh.allow_default_route", () => {
    for (const ip of ["0.0.0.0/0", "::/0", "10.1.2.3/0"]) expect(issuesOf({ peers: [{ publicKey: k2, allowedIps: [ip] }] })).toMatch(/allowed_ips\[0\]: (0\.0\.0\.0|::)\/0 is shorter than \/(8|16) \(mesh\.min_route_prefix_v[46]\); refused unless mesh\.allow_default_route is true/);
    const full = privConfigFrom({ mesh: { interface: "plexd0", allow_default_route: true } });
    expect(validateMeshSpec(full, spec({ peers: [{ publicKey: k2, allowedIps: ["0.0.0.0/0", "::/0"] }] })).peers[0]?.allowedIps).toEqual(["0.0.0.0/0", "::/0"]);
    expect(validateMeshSpec(full, spec({ peers: [{ publicKey: k2, allowedIps: ["128.0.0.0/1"] }] })).peers[0]?.allowedIps).toEqual(["128.0.0.0/1"]);
    // With full tunnel allowed, the device marks its own packets with the full-tunnel table's number.
    expect(validateMeshSpec(full, spec({})).fwmark).toBe(51820);
    expect(validateMeshSpec(privConfigFrom({ mesh: { interface: "plexd0", allow_default_route: true, full_tunnel_table: 300 } }), spec({})).fwmark).toBe(300);
    expect(validateMeshSpec(cfg, spec({})).fwmark).toBe(0);
  });

  it("refuses prefixes shorter than mesh.min_route_prefix_v4/_v6 (a default route in halves), unless full tunnel is allowed", () => {
    expect(issuesOf({ peers: [{ publicKey: k2, allowedIps: ["0.0.0.0/1", "128.0.0.0/1"] }] })).toContain("128.0.0.0/1 is shorter than /8 (mesh.min_route_prefix_v4)");
    expect(issuesOf({ peers: [{ publicKey: k2, allowedIps: ["2000::/3"] }] })).toContain("2000::/3 is shorter than /16 (mesh.min_route_prefix_v6)");
    expect(validateMeshSpec(cfg, spec({ peers: [{ publicKey: k2, allowedIps: ["10.0.0.0/8"] }] })).peers[0]?.allowedIps).toEqual(["10.0.0.0/8"]);
    const strict = privConfigFrom({ mesh: { interface: "plexd0", min_route_prefix_v4: 24 } });
    expect(() => validateMeshSpec(strict, spec({ peers: [{ publicKey: k2, allowedIps: ["10.0.0.0/16"] }] }))).toThrow(/shorter than \/24/);
  });
});

describe("checkUniquePeers / checkInterface / Issues", () => {
  const p = (publicKey: string, ...allowedIps: string[]): WgPeer => ({ publicKey, presharedKey: "", endpoint: "", allowedIps, keepalive: 0 });

  it("checkUniquePeers names both claimants of an allowed IP and every duplicate key", () => {
    const issues = new Issues();
    checkUniquePeers([p(k2, "10.0.0.1/32"), p(k3, "10.0.0.2/32", "10.0.0.1/32"), p(k2)], issues.add, (i) => `peers[${i}]`);
    expect(issues.list).toEqual(["peers[1].allowed_ips: 10.0.0.1/32 is also claimed by peers[0]", "peers[2].public_key: duplicate peer"]);
  });

  it("checkInterface knows only the configured names", () => {
    const issues = new Issues();
    expect(checkInterface(cfg, "plexd0", issues)).toBe("plexd0");
    checkInterface(cfg, "lo", issues, "x");
    expect(issues.list).toEqual(['x: "lo" is not an interface plexd may manage (allowed: plexd0)']);
  });

  it("Issues spells out the first 20 and counts the rest", () => {
    const issues = new Issues();
    expect(() => issues.throwIfAny()).not.toThrow();
    for (let i = 0; i < 25; i++) issues.add(`f${i}`, "bad");
    expect(() => issues.throwIfAny()).toThrow(/f19: bad\n {2}… and 5 more$/);
  });
});

describe("validateMeshSpec fuzz", () => {
  // Anything that passes must be inert text for the wg config format, UAPI and ip argv:
  // no whitespace, newline, '=', shell or option characters can survive re-serialisation.
  const safe = {
    key: /^[A-Za-z0-9+/]{43}=$/,
    cidr: /^[0-9a-f.:]+\/\d{1,3}$/,
    endpoint: /^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-f:]+\]):\d{1,5}$/,
  };
  const junk = fc.oneof(fc.string(), fc.constantFrom(priv, "10.0.0.1/32", "192.0.2.1:1", "[::1]:1", "plexd0", "", "::/0"), fc.string({ unit: "binary" }));
  it("accepts only canonical, inert values and refuses everything else with invalid_argument", () => {
    fc.assert(
      fc.property(junk, junk, fc.array(junk, { maxLength: 3 }), junk, junk, fc.array(junk, { maxLength: 3 }), (iface, pk, addrs, peerKey, ep, ips) => {
        let d;
        try {
          d = validateMeshSpec(cfg, spec({ interface: iface, privateKey: pk, addresses: addrs, peers: [{ publicKey: peerKey, endpoint: ep, allowedIps: ips }] }));
        } catch (err) {
          expect(PlexdError.from(err).code).toBe("invalid_argument");
          return;
        }
        expect(d.interface).toBe("plexd0");
        expect(d.privateKey).toMatch(safe.key);
        for (const a of d.addresses) expect(a).toMatch(safe.cidr);
        for (const p of d.peers) {
          expect(p.publicKey).toMatch(safe.key);
          if (p.endpoint) expect(p.endpoint).toMatch(safe.endpoint);
          for (const a of p.allowedIps) {
            expect(a).toMatch(safe.cidr);
            expect(a.endsWith("/0")).toBe(false);
          }
        }
      }),
      { numRuns: 2000 },
    );
  });
});
