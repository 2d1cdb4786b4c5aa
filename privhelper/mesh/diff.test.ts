import { describe, expect, it } from "vitest";
import { renderChange, type WgLiveDevice, type WgPeer } from "../os/wg.js";
import { diffMesh, liveAsDesired, type DesiredMesh, type Live, type MeshPlan } from "./diff.js";

const k = (c: string) => c.repeat(43).slice(0, 42) + "A=";
const peerA: WgPeer = { publicKey: k("a"), presharedKey: "", endpoint: "192.0.2.1:51820", allowedIps: ["10.100.0.2/32"], keepalive: 25 };
const peerB: WgPeer = { publicKey: k("b"), presharedKey: k("p"), endpoint: "", allowedIps: ["10.100.0.3/32", "fd00::3/128"], keepalive: 0 };
const want: DesiredMesh = { interface: "plexd0", privateKey: k("s"), listenPort: 51820, mtu: 1420, addresses: ["10.100.0.1/32"], peers: [peerA, peerB] };

// What the `wg` backend would send for a plan's WireGuard change.
const out = (plan: MeshPlan) => renderChange(plan.wg!, want);

function liveOf(d: DesiredMesh, over: Partial<WgLiveDevice> = {}): Live {
  return {
    link: { name: d.interface, kind: "tun", up: true, mtu: d.mtu, addresses: d.addresses },
    wg: { privateKey: d.privateKey, publicKey: k("P"), listenPort: d.listenPort, peers: d.peers.map((p) => ({ ...p, latestHandshake: 0, rxBytes: 0n, txBytes: 0n })), ...over },
  };
}

describe("diffMesh", () => {
  it("plans a fresh device: create, device fields, every peer, addresses, up", () => {
    const plan = diffMesh(want, { link: undefined, wg: undefined });
    expect(plan.steps.map((s) => s.kind)).toEqual(["create_interface", "set_mtu", "set_private_key", "set_listen_port", "add_peer", "add_peer", "add_address", "link_up"]);
    expect(out(plan).mode).toBe("addconf");
    expect(out(plan).config).toBe(
      [
        "[Interface]",
        `PrivateKey = ${k("s")}`,
        "ListenPort = 51820",
        "[Peer]",
        `PublicKey = ${k("a")}`,
        "PresharedKey = AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "Endpoint = 192.0.2.1:51820",
        "AllowedIPs = 10.100.0.2/32",
        "PersistentKeepalive = 25",
        "[Peer]",
        `PublicKey = ${k("b")}`,
        `PresharedKey = ${k("p")}`,
        "AllowedIPs = 10.100.0.3/32, fd00::3/128",
        "PersistentKeepalive = off",
        "",
      ].join("\n"),
    );
    // keys never appear in plan details (they are logged and returned to the caller)
    expect(JSON.stringify(plan.steps)).not.toContain(k("s"));
    expect(JSON.stringify(plan.steps)).not.toContain(k("p"));
  });

  it("plans nothing when the live device matches (idempotence)", () => {
    const plan = diffMesh(want, liveOf(want));
    expect(plan.steps).toEqual([]);
    expect(plan.wg).toBeUndefined();
    expect(plan.create || plan.up || plan.mtu !== undefined).toBe(false);
  });

  it("ignores a roamed endpoint when the spec names none, and MTU 0", () => {
    const live = liveOf(want);
    live.wg!.peers[1]!.endpoint = "198.51.100.7:4000";
    expect(diffMesh({ ...want, mtu: 0 }, live).steps).toEqual([]);
  });

  it("sends only the changed peer with addconf", () => {
    const live = liveOf(want);
    live.wg!.peers[0]!.allowedIps = ["10.100.0.9/32"];
    live.wg!.peers[0]!.endpoint = "192.0.2.9:1";
    const plan = diffMesh(want, live);
    expect(plan.steps).toEqual([{ kind: "update_peer", detail: `${k("a")} endpoint,allowed_ips` }]);
    expect(plan.wg).toEqual({ upsert: [peerA], remove: [] });
    expect(out(plan).mode).toBe("addconf");
    expect(out(plan).config).not.toContain(k("b"));
    expect(out(plan).config).not.toContain("PrivateKey");
  });

  it("clears a live PSK the spec dropped with the zero key", () => {
    const live = liveOf(want);
    live.wg!.peers[0]!.presharedKey = k("q");
    const plan = diffMesh(want, live);
    expect(plan.steps.map((s) => s.detail)).toEqual([`${k("a")} preshared_key`]);
    expect(out(plan).config).toContain("PresharedKey = AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
  });

  it("removes peers in the same single step with syncconf of the full device", () => {
    const live = liveOf(want);
    const extra = { publicKey: k("z"), presharedKey: "", endpoint: "", allowedIps: [], keepalive: 0, latestHandshake: 5, rxBytes: 1n, txBytes: 2n };
    live.wg!.peers.push(extra);
    const plan = diffMesh(want, live);
    expect(plan.steps).toEqual([{ kind: "remove_peer", detail: k("z") }]);
    expect(plan.wg).toEqual({ upsert: [], remove: [k("z")] });
    expect(out(plan).mode).toBe("syncconf");
    expect(out(plan).config).toContain(`PrivateKey = ${k("s")}`);
    expect(out(plan).config).toContain("ListenPort = 51820");
    expect(out(plan).config).toContain(k("a"));
    expect(out(plan).config).not.toContain(k("z"));
  });

  it("adds missing and removes extra addresses, brings a down link up", () => {
    const live = liveOf(want);
    live.link = { ...live.link!, up: false, addresses: ["10.100.0.1/16", "10.100.0.1/32"] };
    const plan = diffMesh({ ...want, addresses: ["10.100.0.1/32", "fd00::1/128"] }, live);
    expect(plan.addAddresses).toEqual(["fd00::1/128"]);
    expect(plan.removeAddresses).toEqual(["10.100.0.1/16"]);
    expect(plan.up).toBe(true);
    expect(plan.wg).toBeUndefined();
  });

  it("liveAsDesired round-trips: diffing a device against its own snapshot plans nothing", () => {
    const live = liveOf(want);
    const snap = liveAsDesired("plexd0", live)!;
    expect(diffMesh(snap, live).steps).toEqual([]);
    expect(liveAsDesired("plexd0", { link: undefined, wg: undefined })).toBeUndefined();
  });
});
