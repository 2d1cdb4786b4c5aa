// User access without a kernel: which peers are admitted (max_peers refuses only the newcomer,
// default routes and overlaps refused with reasons), the forward rules the policy gives their
// addresses, and the service's kernel part, heartbeat and capabilities.
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { RuleAction } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { generateWireGuardKeyPair } from "../../proto/lib/keys.js";
import { parseIPv4Int } from "../../proto/lib/net.js";
import { parseConfig } from "../config/schema.js";
import { createLogger } from "../util/log.js";
import { deviceKey } from "./device-keys.js";
import { BridgeManager } from "./manager.js";
import { accessForwardRules, admitPeers, type PolicyView } from "./user-access-peers.js";
import { UserAccessService } from "./user-access.js";
import type { BridgeDesired } from "./service.js";

const k = () => generateWireGuardKeyPair().publicKey;
const [k1, k2, k3] = [k(), k(), k()];
const ctx = { maxPeers: 2, devicePublicKey: k(), meshPrefixes: ["10.100.0.1/32", "10.100.0.2/32", "192.168.50.0/24"] };

describe("admitPeers", () => {
  it("admits clients with host addresses; a plain address means /32", () => {
    const r = admitPeers([{ public_key: k1, allowed_ips: ["10.100.250.2"], label: "alice" }], new Set(), ctx);
    expect(r).toEqual({ peers: [{ publicKey: k1, allowedIps: ["10.100.250.2/32"], label: "alice" }], refused: [] });
  });

  it("max_peers refuses only the newcomer, even when it comes first in the list", () => {
    const list = [
      { public_key: k3, allowed_ips: ["10.100.250.3/32"], label: "new" },
      { public_key: k1, allowed_ips: ["10.100.250.1/32"], label: "a" },
      { public_key: k2, allowed_ips: ["10.100.250.2/32"], label: "b" },
    ];
    const r = admitPeers(list, new Set([k1, k2]), ctx);
    expect(r.peers.map((p) => p.label)).toEqual(["a", "b"]);
    expect(r.refused).toEqual([{ publicKey: k3, label: "new", reason: "max_peers (2) reached" }]);
  });

  it("refuses default routes, IPv6, bad keys and overlaps, each with every reason", () => {
    const r = admitPeers(
      [
        { public_key: k1, allowed_ips: ["0.0.0.0/0", "fd00::1/128", "nonsense"], label: "wide" },
        { public_key: "short", allowed_ips: [], psk: "x" },
        { public_key: k2, allowed_ips: ["10.100.0.0/24"], label: "mesh" },
        { public_key: k3, allowed_ips: ["10.100.250.0/24"], label: "c" },
        { public_key: ctx.devicePublicKey, allowed_ips: ["10.100.251.1/32"], label: "self" },
      ],
      new Set(),
      { ...ctx, maxPeers: 10 },
    );
    const reasons = Object.fromEntries(r.refused.map((x) => [x.label || x.publicKey, x.reason]));
    expect(reasons.wide).toBe('allowed_ips[0]: 0.0.0.0/0 is a default route; allowed_ips[1]: fd00::1/128 is IPv6 (the mesh and its policies are IPv4); allowed_ips[2]: "nonsense" is not a CIDR');
    expect(reasons.short).toBe("public_key: not a WireGuard key (44 characters of base64); allowed_ips: must list the client's tunnel addresses; psk: not a WireGuard key (44 characters of base64)");
    expect(reasons.mesh).toBe("allowed_ips: 10.100.0.0/24 overlaps 10.100.0.1/32, which the mesh routes to a node");
    expect(reasons.self).toBe("public_key: is the bridge's own access key");
    expect(r.peers.map((p) => p.label)).toEqual(["c"]);
    const again = admitPeers([{ public_key: k3, allowed_ips: ["10.100.250.0/24"], label: "c" }, { public_key: k1, allowed_ips: ["10.100.250.9/32"], label: "d" }, { public_key: k3, allowed_ips: ["10.100.252.1/32"] }], new Set(), ctx);
    expect(again.refused.map((x) => x.reason)).toEqual(["allowed_ips: 10.100.250.9/32 overlaps 10.100.250.0/24 of peer c", "public_key: listed twice"]);
  });
});

describe("accessForwardRules", () => {
  const ips: Record<string, string> = { nA: "10.100.0.10", nB: "10.100.0.11" };
  const view = (rules: object[]): PolicyView => ({ policies: [{ id: "p", rules: rules as never }], local: { id: "br", meshIp: "10.100.0.1" }, ipOf: (id) => parseIPv4Int(ips[id] ?? "") });
  const peers = [{ publicKey: k1, allowedIps: ["10.100.250.2/32"], label: "alice" }];
  const shape = (rules: ReturnType<typeof accessForwardRules>) => rules.map(({ id: _id, ...r }) => r);

  it("established first, a policy rule per client address on the device, the device's drop last", () => {
    const rules = accessForwardRules("wg-access", peers, view([
      { src: "10.100.250.2", dst: "nA", action: "allow" },
      { src: "10.100.250.0/24", dst: "nB", protocol: "tcp", port: 22, action: "allow" },
      { src: "10.100.250.2", dst: "nB", protocol: "tcp", port: 23, action: "deny" },
      { src: "*", dst: "nB", action: "allow" },
      { src: "nA", dst: "nB", action: "allow" },
      { src: "10.100.250.2", dst: "br", action: "allow" },
      { src: "10.100.9.0/24", dst: "nA", action: "allow" },
    ]));
    expect(shape(rules)).toEqual([
      { ctEstablished: true, verdict: "accept" },
      { iifname: "wg-access", srcCidr: "10.100.250.2/32", dstCidr: "10.100.0.11/32", protocol: "tcp", portFrom: 23, verdict: "drop" },
      { iifname: "wg-access", srcCidr: "10.100.250.2/32", dstCidr: "10.100.0.10/32", verdict: "accept" },
      { iifname: "wg-access", srcCidr: "10.100.250.2/32", dstCidr: "10.100.0.11/32", protocol: "tcp", portFrom: 22, verdict: "accept" },
      { iifname: "wg-access", verdict: "drop" },
    ]);
    expect(new Set(rules.map((r) => r.id)).size).toBe(rules.length);
  });

  it("without clients or policies the device only drops", () => {
    expect(shape(accessForwardRules("wg-access", [], view([{ src: "10.100.250.2", dst: "nA", action: "allow" }])))).toEqual([{ ctEstablished: true, verdict: "accept" }, { iifname: "wg-access", verdict: "drop" }]);
    expect(shape(accessForwardRules("wg-access", peers, undefined))).toEqual([{ ctEstablished: true, verdict: "accept" }, { iifname: "wg-access", verdict: "drop" }]);
  });
});

describe("UserAccessService", () => {
  const device = generateWireGuardKeyPair();
  const config = (access: object[]) => parseConfig({ api: "https://cp.example.com", mode: "bridge", bridge: { access } });
  const make = () => {
    const made: string[] = [];
    const svc = new UserAccessService({
      log: createLogger({ name: "test", level: "silent" }),
      dataDir: "/nonexistent",
      deviceKey: (_dir, name) => (made.push(name), Promise.resolve(device)),
      meshPrefixes: () => ["10.100.0.10/32"],
      policyView: () => ({ policies: [{ id: "p", rules: [{ src: "10.100.250.2", dst: "10.100.0.10", port: 0, protocol: "", action: "allow" }] }], local: { id: "br", meshIp: "10.100.0.1" }, ipOf: () => undefined }),
    });
    return { svc, made };
  };
  const block = (peers: object[], extra: object = {}): BridgeDesired => ({ user_access_config: { enabled: true, interface_name: "wg-access", listen_port: 51822, peers, ...extra } });

  it("runs the device with its key, forwarding and rules; heartbeat and capabilities say so", async () => {
    const { svc, made } = make();
    const input = { config: config([{ type: "wireguard", max_peers: 1 }]), desired: block([{ public_key: k1, allowed_ips: ["10.100.250.2/32"], label: "alice" }, { public_key: k2, allowed_ips: ["10.100.250.3/32"], label: "bob" }]) };
    expect(svc.wanted(input)).toBe(true);
    await svc.apply(input);
    expect(made).toEqual(["wg-access"]);
    const part = svc.kernel();
    expect(part.interfaces).toEqual([{ name: "wg-access", privateKey: device.privateKey, listenPort: 51822, peers: [{ publicKey: k1, allowedIps: ["10.100.250.2/32"] }] }]);
    expect(part.forwarding).toEqual(["plexd0", "wg-access"]);
    expect(part.routes).toBeUndefined();
    expect(part.forward?.map((r) => r.verdict)).toEqual(["accept", "accept", "drop"]);
    const st = svc.status();
    expect(st.detail).toBe("wg-access on UDP 51822, 1/1 peers; refused bob: max_peers (1) reached");
    expect(st.counters).toEqual({ peers: 1, peers_refused: 1 });
    expect(st.heartbeat).toEqual({ enabled: true, interface_name: "wg-access", peer_count: 1, listen_port: 51822 });
    expect(st.capabilities).toEqual({ user_access: "true", access_listen_port: "51822", access_public_key: device.publicKey });
  });

  it("a state without the block keeps the peers; enabled false stops the service; a foreign interface name fails it", async () => {
    const { svc } = make();
    const cfg = config([{ type: "wireguard" }]);
    await svc.apply({ config: cfg, desired: block([{ public_key: k1, allowed_ips: ["10.100.250.2/32"] }]) });
    await svc.apply({ config: cfg, desired: {} });
    expect(svc.view()?.peers.map((p) => p.publicKey)).toEqual([k1]);
    expect(svc.wanted({ config: cfg, desired: block([], { enabled: false }) })).toBe(false);
    await expect(svc.apply({ config: cfg, desired: block([], { interface_name: "wg-other", listen_port: 51820 }) })).rejects.toThrow(
      'user_access_config.interface_name: "wg-other" is not the configured bridge.access[].interface_name "wg-access"; user_access_config.listen_port: 51820 is the mesh or relay port',
    );
  });

  it("a renamed device gets the key kept for its own name", async () => {
    const { svc, made } = make();
    await svc.apply({ config: config([{ type: "wireguard" }]), desired: {} });
    await svc.apply({ config: config([{ type: "wireguard" }]), desired: {} });
    await svc.apply({ config: config([{ type: "wireguard", interface_name: "wg-users" }]), desired: {} });
    expect(made).toEqual(["wg-access", "wg-users"]);
    expect(svc.kernel().interfaces?.map((i) => i.name)).toEqual(["wg-users"]);
  });

  it("tailscale and netbird are validated but reported as not supported", async () => {
    const { svc } = make();
    await expect(svc.apply({ config: config([{ type: "tailscale" }]), desired: {} })).rejects.toThrow("bridge.access: tailscale: not supported by this version (only type wireguard runs)");
    await svc.apply({ config: config([{ type: "wireguard" }, { type: "netbird" }]), desired: {} });
    expect(svc.status().detail).toBe("wg-access on UDP 51822, 0/50 peers; netbird: not supported by this version");
  });
});

describe("user access under the bridge manager", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "plexd-ua-"));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it("one ApplyMesh for the device with its kept key, forwarding on it and the mesh, the device's forward chain", async () => {
    const cfg = parseConfig({ api: "https://cp.example.com", mode: "bridge", data_dir: dataDir, bridge: { access: [{ type: "wireguard" }] } });
    const meshSpecs: { iface: string; key: string; port: number; peers: string[][] }[] = [];
    const routes: string[][] = [];
    const m = new BridgeManager({
      priv: {
        applyRoutes: (req) => (routes.push([...(req?.spec?.forwarding ?? [])]), Promise.resolve({ result: { changed: true, plan: [] } } as never)),
        applyMesh: (req) => {
          const sp = req?.spec;
          meshSpecs.push({ iface: sp?.interface ?? "", key: sp?.privateKey ?? "", port: sp?.listenPort ?? 0, peers: (sp?.peers ?? []).map((p) => [p.publicKey ?? "", ...(p.allowedIps ?? [])]) });
          return Promise.resolve({ result: { changed: true, plan: [] } } as never);
        },
      },
      config: () => cfg,
      store: { state: { peers: {}, policies: [], metadata: {}, data: [], secret_refs: [], deferred: {}, bridge: { user_access_config: { peers: [{ public_key: k1, allowed_ips: ["10.100.250.2"] }] } } }, subscribe: () => () => undefined },
      health: { set: () => undefined, clear: () => undefined },
      log: createLogger({ name: "test", level: "silent" }),
      signal: new AbortController().signal,
      onFirewallChange: () => undefined,
    });
    m.register(new UserAccessService({ log: createLogger({ name: "test", level: "silent" }), dataDir, deviceKey }));
    await m.sync("test");
    const kept = await deviceKey(dataDir, "wg-access");
    expect(statSync(join(dataDir, "access", "wg-access.key")).mode & 0o777).toBe(0o600);
    expect(meshSpecs).toEqual([{ iface: "wg-access", key: kept.privateKey, port: 51822, peers: [[k1, "10.100.250.2/32"]] }]);
    expect(routes).toEqual([["plexd0", "wg-access"]]);
    const chains = m.bridgeChains();
    expect(chains.map((c) => [c.name, c.rules.map((r) => [r.iifname, r.ctEstablished, r.action])])).toEqual([
      ["forward", [["wg-access", false, RuleAction.JUMP]]],
      ["plexd-bridge-fwd", [["", true, RuleAction.ACCEPT], ["wg-access", false, RuleAction.DROP]]],
    ]);
    expect(m.capabilities()).toMatchObject({ user_access: "true", access_listen_port: "51822", access_public_key: kept.publicKey });
    expect(m.heartbeat()).toMatchObject({ user_access: { enabled: true, interface_name: "wg-access", peer_count: 1, listen_port: 51822 } });
  });
});
