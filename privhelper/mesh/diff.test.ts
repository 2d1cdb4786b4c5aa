import { describe, expect, it } from "vitest";
import { key } from "../../test/support/privhelper.js";
import type { LiveRoute } from "../os/ip.js";
import type { WgLiveDevice, WgPeer } from "../os/wg.js";
import { diffMesh, kernelPrefixes, liveAsDesired, peerChanges, planRoutes, type DesiredMesh, type Live } from "./diff.js";

const [priv, a, b, psk] = [key(1), key(3), key(4), key(5)];
const peerA: WgPeer = { publicKey: a, presharedKey: "", endpoint: "192.0.2.1:51820", allowedIps: ["10.100.0.2/32"], keepalive: 25 };
const peerB: WgPeer = { publicKey: b, presharedKey: psk, endpoint: "", allowedIps: ["10.100.0.3/32", "fd00::3/128"], keepalive: 0 };
const want: DesiredMesh = { interface: "plexd0", privateKey: priv, listenPort: 51820, mtu: 1420, addresses: ["10.100.0.1/32"], peers: [peerA, peerB] };
const ours = (dst: string, dev = "plexd0"): LiveRoute => ({ dst, dev, plexd: true });
const foreign = (dst: string, dev = "eth0"): LiveRoute => ({ dst, dev, plexd: false });

/** The device exactly as `d` wants it, with privhelper's routes for every allowed IP. */
function liveOf(d: DesiredMesh, over: Partial<WgLiveDevice> = {}): Live {
  return {
    link: { name: d.interface, kind: "wireguard", up: true, mtu: d.mtu, addresses: d.addresses },
    wg: { privateKey: d.privateKey, publicKey: key(2), listenPort: d.listenPort, peers: d.peers.map((p) => ({ ...p, latestHandshake: 0, rxBytes: 0n, txBytes: 0n })), ...over },
    routes: [foreign("0.0.0.0/0"), ...d.peers.flatMap((p) => p.allowedIps.map((x) => ours(x, d.interface)))],
  };
}

describe("diffMesh", () => {
  it("plans a fresh device: create, device fields, every peer, addresses, up, a route per allowed IP", () => {
    const plan = diffMesh(want, { link: undefined, wg: undefined, routes: [foreign("0.0.0.0/0")] });
    expect(plan.steps).toEqual([
      { kind: "create_interface", detail: "plexd0" },
      { kind: "set_mtu", detail: "1420" },
      { kind: "set_private_key", detail: "" },
      { kind: "set_listen_port", detail: "51820" },
      { kind: "add_peer", detail: a },
      { kind: "add_peer", detail: b },
      { kind: "add_address", detail: "10.100.0.1/32" },
      { kind: "link_up", detail: "plexd0" },
      { kind: "add_route", detail: "10.100.0.2/32" },
      { kind: "add_route", detail: "10.100.0.3/32" },
      { kind: "add_route", detail: "fd00::3/128" },
    ]);
    expect(plan).toMatchObject({ create: true, mtu: 1420, up: true, removePeers: [], addAddresses: ["10.100.0.1/32"], removeAddresses: [], removeRoutes: [], foreignRoutes: [] });
    expect(plan.upsert).toEqual({ privateKey: priv, listenPort: 51820, upsert: [peerA, peerB], remove: [] });
    // Steps are logged and returned to the caller: no key material in them.
    expect(JSON.stringify(plan.steps)).not.toContain(priv);
    expect(JSON.stringify(plan.steps)).not.toContain(psk);
  });

  it("plans nothing when the live device matches (idempotence)", () => {
    const plan = diffMesh(want, liveOf(want));
    expect(plan.steps).toEqual([]);
    expect(plan.upsert).toBeUndefined();
    expect(plan.create || plan.up || plan.mtu !== undefined).toBe(false);
    expect([...plan.addRoutes, ...plan.removeRoutes, ...plan.foreignRoutes, ...plan.removePeers]).toEqual([]);
  });

  it("ignores a roamed endpoint when the spec names none, and the kernel's MTU when the spec says 0", () => {
    const live = liveOf(want);
    live.wg!.peers[1]!.endpoint = "198.51.100.7:4000";
    live.link!.mtu = 1380;
    expect(diffMesh({ ...want, mtu: 0 }, live).steps).toEqual([]);
  });

  it("upserts only the changed peer, naming the changed fields; device fields stay out", () => {
    const live = liveOf(want);
    live.wg!.peers[0]!.allowedIps = ["10.100.0.9/32"];
    live.wg!.peers[0]!.endpoint = "192.0.2.9:1";
    live.routes = [foreign("0.0.0.0/0"), ours("10.100.0.9/32"), ours("10.100.0.3/32"), ours("fd00::3/128")];
    const plan = diffMesh(want, live);
    expect(plan.steps).toEqual([
      { kind: "update_peer", detail: `${a} endpoint,allowed_ips` },
      { kind: "add_route", detail: "10.100.0.2/32" },
      { kind: "remove_route", detail: "10.100.0.9/32" },
    ]);
    expect(plan.upsert).toEqual({ upsert: [peerA], remove: [] });
  });

  it("notices a PSK and keepalive change, and a changed private key or port", () => {
    const live = liveOf(want, { privateKey: key(8), listenPort: 1 });
    live.wg!.peers[0]!.presharedKey = key(9);
    live.wg!.peers[1]!.keepalive = 10;
    const plan = diffMesh(want, live);
    expect(plan.steps.map((s) => `${s.kind} ${s.detail}`)).toEqual(["set_private_key ", "set_listen_port 51820", `update_peer ${a} preshared_key`, `update_peer ${b} persistent_keepalive`]);
    expect(plan.upsert).toEqual({ privateKey: priv, listenPort: 51820, upsert: [peerA, peerB], remove: [] });
  });

  it("removes extra peers apart from the upserts, and their routes", () => {
    const live = liveOf(want);
    live.wg!.peers.push({ publicKey: key(7), presharedKey: "", endpoint: "", allowedIps: ["10.100.0.7/32"], keepalive: 0, latestHandshake: 5, rxBytes: 1n, txBytes: 2n });
    live.routes.push(ours("10.100.0.7/32"));
    const plan = diffMesh(want, live);
    expect(plan.steps).toEqual([
      { kind: "remove_peer", detail: key(7) },
      { kind: "remove_route", detail: "10.100.0.7/32" },
    ]);
    expect(plan.upsert).toBeUndefined();
    expect(plan.removePeers).toEqual([key(7)]);
    expect(plan.removeRoutes).toEqual(["10.100.0.7/32"]);
  });

  it("adds missing and removes extra addresses, brings a down link up", () => {
    const live = liveOf(want);
    live.link = { ...live.link!, up: false, addresses: ["10.100.0.1/16", "10.100.0.1/32"] };
    const plan = diffMesh({ ...want, addresses: ["10.100.0.1/32", "fd00::1/128"] }, live);
    expect(plan.addAddresses).toEqual(["fd00::1/128"]);
    expect(plan.removeAddresses).toEqual(["10.100.0.1/16"]);
    expect(plan.up).toBe(true);
    expect(plan.upsert).toBeUndefined();
    expect(plan.steps.map((s) => s.kind)).toEqual(["add_address", "remove_address", "link_up"]);
  });

  it("leaves a destination another owner routes alone and reports it; never removes a route it did not make", () => {
    const live = liveOf({ ...want, peers: [] });
    live.routes = [
      foreign("0.0.0.0/0"),
      foreign("10.100.0.2/32", "eth1"), // someone else's route to what peer A claims
      ours("fd00::3/128", "plexd1"), // privhelper's, but via another of its interfaces
      foreign("10.200.0.0/16", "plexd0"), // added by hand via our device: not ours to remove
      ours("10.100.0.99/32"), // ours and no longer wanted
    ];
    live.wg!.peers = want.peers.map((p) => ({ ...p, latestHandshake: 0, rxBytes: 0n, txBytes: 0n }));
    const plan = diffMesh(want, live);
    expect(plan.addRoutes).toEqual(["10.100.0.3/32"]);
    expect(plan.foreignRoutes).toEqual(["10.100.0.2/32", "fd00::3/128"]);
    expect(plan.removeRoutes).toEqual(["10.100.0.99/32"]);
    expect(plan.steps.filter((s) => s.kind.endsWith("_route"))).toEqual([
      { kind: "add_route", detail: "10.100.0.3/32" },
      { kind: "remove_route", detail: "10.100.0.99/32" },
    ]);
  });

  it("does not add the prefix route the kernel makes for an interface address, even before the address exists", () => {
    const bridge: WgPeer = { ...peerB, allowedIps: ["10.100.0.0/24", "fd00::/64"] };
    const spec = { ...want, addresses: ["10.100.0.1/24", "fd00::1/64"], peers: [peerA, bridge] };
    const fresh = diffMesh(spec, { link: undefined, wg: undefined, routes: [] });
    expect(fresh.addRoutes).toEqual(["10.100.0.2/32"]);
    expect(fresh.foreignRoutes).toEqual(["10.100.0.0/24", "fd00::/64"]);
  });

  it("a device about to be made has no routes, whatever the read found under its name", () => {
    // A privhelper route via a plexd0 that is gone (or not WireGuard, under recreate) dies with it.
    const plan = diffMesh(want, { link: undefined, wg: undefined, routes: [ours("10.100.0.2/32"), ours("10.100.0.50/32"), foreign("10.100.0.3/32", "plexd0")] });
    expect(plan.addRoutes).toEqual(["10.100.0.2/32", "10.100.0.3/32", "fd00::3/128"]);
    expect(plan.removeRoutes).toEqual([]);
  });

  it("a default route is wanted like any prefix, and left alone when the host has one", () => {
    const full: WgPeer = { ...peerA, allowedIps: ["0.0.0.0/0", "::/0"] };
    const plan = diffMesh({ ...want, peers: [full] }, { link: undefined, wg: undefined, routes: [foreign("0.0.0.0/0")] });
    expect(plan.addRoutes).toEqual(["::/0"]);
    expect(plan.foreignRoutes).toEqual(["0.0.0.0/0"]);
  });
});

describe("planRoutes / kernelPrefixes / peerChanges", () => {
  it("planRoutes: the kernel-made set counts as foreign", () => {
    expect(planRoutes("plexd0", new Set(["10.0.0.0/8", "10.1.0.0/16"]), [], new Set(["10.0.0.0/8"]))).toEqual({ addRoutes: ["10.1.0.0/16"], removeRoutes: [], foreignRoutes: ["10.0.0.0/8"] });
  });

  it("kernelPrefixes: the network of each address shorter than a host route, both families", () => {
    expect([...kernelPrefixes(["100.64.0.1/10", "10.1.2.3/32", "fd00::1/64", "fd00::2/128", "192.168.7.9/24", "10.1.255.254/15"])]).toEqual(["100.64.0.0/10", "fd00::/64", "192.168.7.0/24", "10.0.0.0/15"]);
  });

  it("peerChanges compares allowed IPs as sorted lists", () => {
    const live = { ...peerB, allowedIps: ["10.100.0.3/32"] };
    expect(peerChanges(peerB, live)).toEqual(["allowed_ips"]);
    expect(peerChanges(peerB, { ...peerB })).toEqual([]);
  });
});

describe("liveAsDesired", () => {
  it("round-trips: diffing a device against its own snapshot plans nothing, and carries no live counters", () => {
    const live = liveOf(want);
    live.wg!.peers[0]!.latestHandshake = 99;
    const snap = liveAsDesired("plexd0", live)!;
    expect(diffMesh(snap, live).steps).toEqual([]);
    expect(snap.peers[0]).toEqual(peerA);
  });

  it("is undefined without a link or without WireGuard on it", () => {
    expect(liveAsDesired("plexd0", { link: undefined, wg: undefined, routes: [] })).toBeUndefined();
    expect(liveAsDesired("plexd0", { ...liveOf(want), wg: undefined })).toBeUndefined();
  });
});
