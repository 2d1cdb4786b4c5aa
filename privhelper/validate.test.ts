import { create } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MeshSpecSchema } from "../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../proto/lib/errors.js";
import { privConfigFrom } from "./config.js";
import { parseCidr, parseEndpoint, parseIp, parseKey, validateMeshSpec } from "./validate.js";

const key = Buffer.alloc(32, 7).toString("base64");
const key2 = Buffer.alloc(32, 9).toString("base64");
const cfg = privConfigFrom({ mesh: { interface: "plexd0" } });
const spec = (over: object = {}) =>
  create(MeshSpecSchema, {
    interface: "plexd0",
    privateKey: key,
    listenPort: 51820,
    addresses: ["10.100.0.1/32"],
    peers: [{ publicKey: key2, allowedIps: ["10.100.0.2/32"], endpoint: "192.0.2.2:51820", persistentKeepalive: 25 }],
    ...over,
  });

function issuesOf(over: object): string {
  try {
    validateMeshSpec(cfg, spec(over));
  } catch (err) {
    expect(PlexdError.from(err).code).toBe("invalid_argument");
    return (err as Error).message;
  }
  throw new Error("expected invalid_argument");
}

describe("parsers re-serialise", () => {
  it("keys: 32 bytes of canonical base64 only", () => {
    expect(parseKey(key)).toBe(key);
    expect(parseKey(key.slice(0, -2) + "B=")).toBeUndefined(); // non-zero padding bits
    expect(parseKey(Buffer.alloc(31).toString("base64"))).toBeUndefined();
    expect(parseKey(`${key}\n`)).toBeUndefined();
    expect(parseKey("-".repeat(43) + "=")).toBeUndefined();
  });

  it("IPs and CIDRs", () => {
    expect(parseIp("010.1.1.1")).toBeUndefined();
    expect(parseIp("256.1.1.1")).toBeUndefined();
    expect(parseIp("FD00:0:0::0001")?.text).toBe("fd00::1");
    expect(parseIp("::ffff:1.2.3.4")?.text).toBe("::ffff:102:304");
    expect(parseIp("fe80::1%eth0")).toBeUndefined();
    expect(parseCidr("10.1.2.3/24", true)).toBe("10.1.2.0/24");
    expect(parseCidr("10.1.2.3/24", false)).toBe("10.1.2.3/24");
    expect(parseCidr("fd00:1:2:3::5/64", true)).toBe("fd00:1:2:3::/64");
    expect(parseCidr("2001:db8:0:0:1:0:0:1/128", false)).toBe("2001:db8::1:0:0:1/128");
    expect(parseCidr("10.0.0.0/33", true)).toBeUndefined();
    expect(parseCidr("10.0.0.0/08", true)).toBeUndefined();
    expect(parseCidr("10.0.0.0", true)).toBeUndefined();
    expect(parseCidr("10.0.0.0/8; rm -rf /", true)).toBeUndefined();
  });

  it("endpoints: IP literal and port only", () => {
    expect(parseEndpoint("192.0.2.1:51820")).toBe("192.0.2.1:51820");
    expect(parseEndpoint("[FD00::0001]:1")).toBe("[fd00::1]:1");
    expect(parseEndpoint("fd00::1:1")).toBeUndefined();
    expect(parseEndpoint("example.com:51820")).toBeUndefined();
    expect(parseEndpoint("192.0.2.1:0")).toBeUndefined();
    expect(parseEndpoint("192.0.2.1:65536")).toBeUndefined();
    expect(parseEndpoint("[192.0.2.1]:5")).toBeUndefined();
  });

  it("canonical output is a fixed point (property)", () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), fc.integer({ min: 0, max: 128 }), fc.boolean(), (ip, bits, net) => {
        const b = ip.includes(":") ? bits : bits % 33;
        const once = parseCidr(`${ip}/${b}`, net);
        expect(once).toBeDefined();
        expect(parseCidr(once!, net)).toBe(once);
      }),
    );
  });
});

describe("validateMeshSpec", () => {
  it("accepts and normalises a good spec", () => {
    const d = validateMeshSpec(cfg, spec({ peers: [{ publicKey: key2, allowedIps: ["10.100.0.9/16", "10.100.0.9/16"] }] }));
    expect(d.peers[0]!.allowedIps).toEqual(["10.100.0.0/16"]);
    expect(d.peers[0]!.endpoint).toBe("");
  });

  it.each([
    [{ interface: "eth0" }, "spec.interface"],
    [{ interface: "plexd0;reboot" }, "spec.interface"],
    [{ interface: "plexd0 " }, "spec.interface"],
    [{ privateKey: "nope" }, "spec.private_key"],
    [{ listenPort: 0 }, "spec.listen_port"],
    [{ listenPort: 70000 }, "spec.listen_port"],
    [{ mtu: 100 }, "spec.mtu"],
    [{ addresses: ["10.100.0.1"] }, "spec.addresses[0]"],
    [{ peers: [{ publicKey: key2, allowedIps: ["10.1.0.0/99"] }] }, "spec.peers[0].allowed_ips[0]"],
    [{ peers: [{ publicKey: key2, presharedKey: "x" }] }, "spec.peers[0].preshared_key"],
    [{ peers: [{ publicKey: key2, persistentKeepalive: 70000 }] }, "spec.peers[0].persistent_keepalive"],
    [{ peers: [{ publicKey: key2 }, { publicKey: key2 }] }, "spec.peers[1].public_key: duplicate"],
    [{ peers: [{ publicKey: key2, allowedIps: ["10.0.0.1/32"] }, { publicKey: key, allowedIps: ["10.0.0.1/32"] }] }, "also claimed"],
  ])("rejects %j", (over, where) => {
    expect(issuesOf(over)).toContain(where);
  });

  it("bounds the peer count", () => {
    const peers = Array.from({ length: 20_001 }, () => ({ publicKey: key2 }));
    expect(issuesOf({ peers })).toContain("at most 20000 peers");
  });

  it("allows bridge interfaces only in bridge mode", () => {
    const bridge = privConfigFrom({ mode: "bridge", bridge: { access: [{ type: "wireguard" }] } });
    expect(validateMeshSpec(bridge, spec({ interface: "wg-access" })).interface).toBe("wg-access");
    expect(validateMeshSpec(bridge, spec({ interface: "wg-s2s-0a1b2c3d" })).interface).toBe("wg-s2s-0a1b2c3d");
    expect(() => validateMeshSpec(bridge, spec({ interface: "wg-s2s-zz" }))).toThrow(/not an interface/);
    expect(issuesOf({ interface: "wg-access" })).toContain("spec.interface");
  });
});

describe("validateMeshSpec memo of the last valid spec", () => {
  const key3 = Buffer.alloc(32, 11).toString("base64");
  const peer = (publicKey: string, ip: string, endpoint = "192.0.2.2:51820") => ({ publicKey, allowedIps: [ip], endpoint, persistentKeepalive: 25 });

  it("a peer seen a moment ago is still checked against the others", () => {
    const base = validateMeshSpec(cfg, spec({ peers: [peer(key2, "10.100.0.2/32"), peer(key3, "10.100.0.3/32")] }));
    expect(base.peers.map((p) => p.allowedIps[0])).toEqual(["10.100.0.2/32", "10.100.0.3/32"]);
    // key3 unchanged (memoised), but key2 now claims its allowed IP too.
    expect(issuesOf({ peers: [peer(key2, "10.100.0.3/32"), peer(key3, "10.100.0.3/32")] })).toMatch(/peers\[1\]\.allowed_ips\[0\]: 10\.100\.0\.3\/32 is also claimed/);
    // The same memoised peer twice is a duplicate.
    validateMeshSpec(cfg, spec({ peers: [peer(key2, "10.100.0.2/32")] }));
    expect(issuesOf({ peers: [peer(key2, "10.100.0.2/32"), peer(key2, "10.100.0.2/32")] })).toMatch(/peers\[1\]\.public_key: duplicate peer/);
  });

  it("a changed field is parsed again, not taken from the memo", () => {
    validateMeshSpec(cfg, spec({ peers: [peer(key2, "10.100.0.2/32")] }));
    expect(issuesOf({ peers: [peer(key2, "10.100.0.2/32", "192.0.2.2:0")] })).toMatch(/peers\[0\]\.endpoint/);
    expect(validateMeshSpec(cfg, spec({ peers: [peer(key2, "10.100.0.9/24")] })).peers[0]?.allowedIps).toEqual(["10.100.0.0/24"]);
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
  const junk = fc.oneof(fc.string(), fc.constantFrom(key, "10.0.0.1/32", "192.0.2.1:1", "[::1]:1", "plexd0", ""), fc.string({ unit: "binary" }));
  it("accepts only canonical, inert values and refuses everything else with invalid_argument", () => {
    fc.assert(
      fc.property(junk, junk, fc.array(junk, { maxLength: 3 }), junk, junk, fc.array(junk, { maxLength: 3 }), (iface, priv, addrs, pk, ep, ips) => {
        let d;
        try {
          d = validateMeshSpec(cfg, spec({ interface: iface, privateKey: priv, addresses: addrs, peers: [{ publicKey: pk, endpoint: ep, allowedIps: ips }] }));
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
          for (const a of p.allowedIps) expect(a).toMatch(safe.cidr);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
