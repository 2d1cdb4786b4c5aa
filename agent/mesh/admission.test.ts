import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { PeerAdmission, type AdmissionContext } from "./admission.js";
import type { Peer } from "./peer.js";

const key = (s: string) => createHash("sha256").update(s).digest("base64");
const peer = (i: number, over: Partial<Peer> = {}): Peer => ({ id: `n_${i}`, public_key: key(`pub${i}`), mesh_ip: `10.100.0.${i}`, endpoint: "", allowed_ips: [], psk: key(`psk${i}`), ...over });
const ctx = (over: Partial<AdmissionContext> = {}): AdmissionContext => ({
  policy: { allowDefaultRoute: false, minRoutePrefix: { 4: 8, 6: 16 } },
  ownPublicKey: key("self"),
  resolve: () => undefined,
  ...over,
});

function admit(a: PeerAdmission, peers: Peer[], c = ctx()): void {
  for (const p of peers) a.decide(p.id, p, c);
}

describe("PeerAdmission", () => {
  it("admits a good peer in canonical form, defaulting allowed IPs to the mesh /32", () => {
    const a = new PeerAdmission();
    expect(a.decide("n_1", peer(1, { endpoint: "192.0.2.1:51820" }), ctx())).toEqual(["n_1"]);
    expect(a.admitted("n_1")).toMatchObject({ endpoint: "192.0.2.1:51820", allowed_ips: ["10.100.0.1/32"] });
    expect(a.decide("n_2", peer(2, { allowed_ips: ["10.100.0.2/32", "fd00:0:0::2/128", "10.100.0.2/32"] }), ctx())).toEqual(["n_2"]);
    expect(a.admitted("n_2")!.allowed_ips).toEqual(["10.100.0.2/32", "fd00::2/128"]);
    expect(a.quarantined().size).toBe(0);
  });

  it.each([
    ["a newline in the endpoint", { endpoint: "192.0.2.1:51820\n" }, /^endpoint: /],
    ["a port out of range", { endpoint: "192.0.2.1:70000" }, /^endpoint: /],
    ["a bad key", { public_key: "short" }, /^public_key: must be a 32-byte base64 key/],
    ["a bad PSK", { psk: "x" }, /^preshared_key: /],
    ["a mesh IP outside the range", { mesh_ip: "192.168.1.1" }, /^mesh_ip: /],
    ["a bad CIDR", { allowed_ips: ["10.100.0.1/33"] }, /^allowed_ips\[0\]: must be an IPv4 or IPv6 CIDR/],
    ["a default route", { allowed_ips: ["0.0.0.0/0"] }, /0\.0\.0\.0\/0 is shorter than \/8 .*allow_default_route/],
    ["an IPv6 default route", { allowed_ips: ["::/0"] }, /::\/0 is shorter than \/16/],
    ["half the internet", { allowed_ips: ["0.0.0.0/1"] }, /shorter than \/8/],
    ["a wrong JSON type", { malformed: "allowed_ips: must be a list of strings" }, /^allowed_ips: must be a list/],
    ["this node's own key", { public_key: key("self") }, /own key/],
  ])("quarantines a peer with %s, with a reason", (_, over, reason) => {
    const a = new PeerAdmission();
    admit(a, [peer(1)]);
    expect(a.decide("n_2", peer(2, over), ctx())).toEqual([]);
    expect(a.admitted("n_2")).toBeUndefined();
    expect(a.reasonOf("n_2")).toMatch(reason);
    expect(a.admitted("n_1")).toBeDefined();
  });

  it("admits a default route when the configuration allows full tunnel", () => {
    const a = new PeerAdmission();
    a.decide("n_1", peer(1, { allowed_ips: ["0.0.0.0/0", "::/0"] }), ctx({ policy: { allowDefaultRoute: true, minRoutePrefix: { 4: 8, 6: 16 } } }));
    expect(a.admitted("n_1")!.allowed_ips).toEqual(["0.0.0.0/0", "::/0"]);
  });

  it("a full-tunnel prefix is the fallback under the other peers' prefixes: it collides only with the same prefix of another peer", () => {
    const a = new PeerAdmission();
    const full = ctx({ policy: { allowDefaultRoute: true, minRoutePrefix: { 4: 8, 6: 16 } } });
    admit(a, [peer(1), peer(2, { allowed_ips: ["0.0.0.0/0", "10.100.0.2/32"] }), peer(3, { allowed_ips: ["10.100.0.3/32", "10.20.0.0/16"] })], full);
    expect(a.quarantined().size).toBe(0);
    expect(a.admitted("n_2")!.allowed_ips).toEqual(["0.0.0.0/0", "10.100.0.2/32"]);
    // The exit peer's own more specific prefixes are held like anyone's.
    expect(a.decide("n_4", peer(4, { allowed_ips: ["10.100.0.2/32"] }), full)).toEqual([]);
    expect(a.reasonOf("n_4")).toMatch(/10\.100\.0\.2\/32 overlaps 10\.100\.0\.2\/32 of peer n_2/);
    // A second exit for the same default route loses to the first, and gets it once the first is gone.
    expect(a.decide("n_5", peer(5, { allowed_ips: ["0.0.0.0/0"] }), full)).toEqual([]);
    expect(a.reasonOf("n_5")).toBe("allowed_ips: 0.0.0.0/0 is already routed to peer n_2");
    expect(a.decide("n_2", undefined, full)).toEqual(["n_2", "n_4", "n_5"]);
    expect(a.admitted("n_5")!.allowed_ips).toEqual(["0.0.0.0/0"]);
  });

  it("a duplicate key loses to the incumbent; removing the duplicate leaves the incumbent; removing the incumbent admits it", () => {
    const a = new PeerAdmission();
    const incumbent = peer(1);
    admit(a, [incumbent]);
    expect(a.decide("n_2", peer(2, { public_key: incumbent.public_key }), ctx())).toEqual([]);
    expect(a.reasonOf("n_2")).toBe("public_key: already used by peer n_1");
    expect(a.decide("n_2", undefined, ctx())).toEqual(["n_2"]);
    expect(a.admitted("n_1")).toBeDefined();
    a.decide("n_2", peer(2, { public_key: incumbent.public_key }), ctx());
    expect(a.decide("n_1", undefined, ctx())).toEqual(["n_1", "n_2"]);
    expect(a.admitted("n_2")!.public_key).toBe(incumbent.public_key);
    expect(a.reasonOf("n_2")).toBeUndefined();
  });

  it.each([
    ["the same prefix", ["10.100.0.1/32"]],
    ["a prefix inside the incumbent's", ["10.100.0.1/32"], ["10.100.0.0/24"]],
    ["a prefix around the incumbent's", ["10.100.0.0/16"]],
    ["an IPv6 prefix around the incumbent's", ["fd00::/16"], ["fd00:1::/32"]],
  ])("overlapping allowed IPs (%s) lose to the incumbent", (_, newcomer, incumbentIps = ["10.100.0.1/32"]) => {
    const a = new PeerAdmission();
    admit(a, [peer(1, { allowed_ips: incumbentIps })]);
    a.decide("n_2", peer(2, { allowed_ips: newcomer }), ctx());
    expect(a.reasonOf("n_2")).toMatch(/^allowed_ips: .* overlaps .* of peer n_1$/);
    expect(a.admitted("n_1")!.allowed_ips).toEqual(incumbentIps);
  });

  it("an incumbent that changes to claim another peer's prefix is the newcomer of that claim", () => {
    const a = new PeerAdmission();
    admit(a, [peer(1), peer(2)]);
    a.decide("n_1", peer(1, { allowed_ips: ["10.100.0.1/32", "10.100.0.2/32"] }), ctx());
    expect(a.admitted("n_1")).toBeUndefined();
    expect(a.reasonOf("n_1")).toMatch(/overlaps 10\.100\.0\.2\/32 of peer n_2/);
    expect(a.admitted("n_2")).toBeDefined();
    // Giving the claim up admits it again.
    expect(a.decide("n_1", peer(1), ctx())).toEqual(["n_1"]);
  });

  it("a peer's own nested prefixes are no collision", () => {
    const a = new PeerAdmission();
    a.decide("n_1", peer(1, { allowed_ips: ["10.1.0.0/16", "10.1.2.0/24"] }), ctx());
    expect(a.admitted("n_1")).toBeDefined();
    a.decide("n_2", peer(2, { allowed_ips: ["10.1.2.128/25"] }), ctx());
    expect(a.reasonOf("n_2")).toMatch(/10\.1\.2\.128\/25 overlaps 10\.1\.0\.0\/16 of peer n_1/);
  });

  it("tells listeners once per change of reason", () => {
    const a = new PeerAdmission();
    const seen: [string, string | undefined][] = [];
    a.subscribe((id, reason) => seen.push([id, reason]));
    const bad = peer(1, { endpoint: "bad" });
    a.decide("n_1", bad, ctx());
    a.decide("n_1", bad, ctx());
    a.decide("n_1", { ...bad }, ctx());
    a.decide("n_1", peer(1, { endpoint: "bad:1:2" }), ctx());
    a.decide("n_1", peer(1), ctx());
    expect(seen).toEqual([
      ["n_1", expect.stringMatching(/^endpoint/)],
      ["n_1", undefined],
    ]);
  });

  it("configures a DNS-name endpoint with its resolved address, and without one until it is known", () => {
    const a = new PeerAdmission();
    const addresses = new Map<string, string>();
    const c = ctx({ resolve: (host, port) => (addresses.has(host) ? `${addresses.get(host)}:${port}` : undefined) });
    const p = peer(1, { endpoint: "Peer.Example.Test:51820" });
    expect(a.decide("n_1", p, c)).toEqual(["n_1"]);
    expect(a.admitted("n_1")!.endpoint).toBe("");
    expect(a.decide("n_1", p, c)).toEqual([]);
    addresses.set("peer.example.test", "192.0.2.7");
    expect(a.decide("n_1", p, c)).toEqual(["n_1"]);
    expect(a.admitted("n_1")!.endpoint).toBe("192.0.2.7:51820");
  });

  it("stays flat: admitting the 10,001st peer costs about what the 101st does", () => {
    const time = (n: number): number => {
      const a = new PeerAdmission();
      const c = ctx();
      const ps = Array.from({ length: n + 200 }, (_, i) => peer(i, { mesh_ip: `10.100.${i >> 8}.${i & 255}` }));
      admit(a, ps.slice(0, n), c);
      const t0 = performance.now();
      for (const p of ps.slice(n)) a.decide(p.id, p, c);
      return performance.now() - t0;
    };
    time(100);
    const small = Math.min(time(100), time(100));
    const large = Math.min(time(10_000), time(10_000));
    expect(large).toBeLessThan(small * 4 + 5);
  });
});
