// The site-to-site service without a kernel: tunnels checked and refused with their reasons,
// admitted with stable interfaces and ports, and turned into the device, forwarding and forward
// rules the manager hands to privhelper (the manager run uses a fake privhelper interface).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { RuleAction } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { generateWireGuardKeyPair } from "../../proto/lib/keys.js";
import { parseConfig } from "../config/schema.js";
import { createLogger, type Logger } from "../util/log.js";
import { deviceKey } from "./device-keys.js";
import { BridgeManager } from "./manager.js";
import type { BridgeDesired } from "./service.js";
import { defaultInterfaceName } from "./site-to-site-tunnels.js";
import { SiteToSiteService } from "./site-to-site.js";

const dataDir = mkdtempSync(join(tmpdir(), "plexd-s2s-"));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

const remoteKey = generateWireGuardKeyPair().publicKey;
const psk = Buffer.alloc(32, 9).toString("base64");
const config = (bridge: object = {}) => parseConfig({ api: "https://cp.example.com", mode: "bridge", data_dir: dataDir, bridge });
const tunnel = (id: string, extra: object = {}) => ({ tunnel_id: id, remote_endpoint: "203.0.113.7:51820", remote_public_key: remoteKey, local_subnets: ["192.168.10.0/24"], remote_subnets: ["192.168.20.0/24"], ...extra });
const desired = (...tunnels: object[]): BridgeDesired => ({ site_to_site_config: { tunnels } });

function recordingLog(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = { write: (s: string) => void lines.push(s) };
  return { log: createLogger({ name: "test", level: "debug", destination: stream }), lines };
}

function service(opts: { log?: Logger; resolve?: (h: string) => Promise<string> } = {}) {
  return new SiteToSiteService({ log: opts.log ?? createLogger({ name: "test", level: "silent" }), dataDir, deviceKey, ...(opts.resolve ? { resolve: opts.resolve } : {}) });
}

async function run(s: SiteToSiteService, d: BridgeDesired, cfg = config()) {
  await s.apply({ config: cfg, desired: d });
  return s;
}

const reasons = (s: SiteToSiteService) => Object.fromEntries(s.rejected.map((r) => [r.id, r.reason]));

describe("site-to-site tunnels", () => {
  it("makes the device, forwarding and forward rules of a tunnel", async () => {
    const s = await run(service(), desired(tunnel("hq", { psk })));
    const iface = defaultInterfaceName("wg-s2s-", "hq");
    expect(iface).toMatch(/^wg-s2s-[0-9a-f]{8}$/);
    const k = s.kernel();
    expect(k.interfaces).toEqual([
      {
        name: iface,
        privateKey: (await deviceKey(dataDir, iface)).privateKey,
        listenPort: 51823,
        peers: [{ publicKey: remoteKey, allowedIps: ["192.168.20.0/24"], endpoint: "203.0.113.7:51820", presharedKey: psk, keepaliveSeconds: 25 }],
      },
    ]);
    expect(new Set(k.forwarding)).toEqual(new Set([iface, "plexd0"]));
    // Replies first, then exactly remote → local, then nothing else from the tunnel.
    expect(k.forward?.map((r) => [r.iifname, r.ctEstablished ?? false, r.srcCidr ?? "", r.dstCidr ?? "", r.verdict])).toEqual([
      [iface, true, "", "", "accept"],
      [iface, false, "192.168.20.0/24", "192.168.10.0/24", "accept"],
      [iface, false, "", "", "drop"],
    ]);
    // Routes come with the device (ApplyMesh routes allowed IPs): none in the RouteSpec.
    expect(k.routes ?? []).toEqual([]);
  });

  it("pairs remote and local subnets of the same address family only", async () => {
    const s = await run(service(), desired(tunnel("v6", { local_subnets: ["192.168.10.0/24", "fd00:10::/64"], remote_subnets: ["192.168.20.0/24", "fd00:20::/64"] })));
    expect(s.kernel().forward?.filter((r) => r.srcCidr !== undefined).map((r) => `${r.srcCidr}>${r.dstCidr}`)).toEqual(["192.168.20.0/24>192.168.10.0/24", "fd00:20::/64>fd00:10::/64"]);
  });

  it("forwards on bridge.access_interface too (LAN hosts start traffic toward the remote site)", async () => {
    const s = await run(service(), desired(tunnel("hq")), config({ access_interface: "lan0" }));
    expect(s.kernel().forwarding).toContain("lan0");
  });

  it("keeps a valid interface_name with the prefix, derives one otherwise", async () => {
    const s = await run(
      service(),
      desired(
        tunnel("a", { interface_name: "wg-s2s-paris", remote_subnets: ["10.1.0.0/16"] }),
        tunnel("b", { interface_name: "wg-s2s-much-too-long", remote_subnets: ["10.2.0.0/16"] }),
        tunnel("c", { interface_name: "eth0", remote_subnets: ["10.3.0.0/16"] }),
        tunnel("d", { interface_name: "wg-s2s-bad name", remote_subnets: ["10.4.0.0/16"] }),
      ),
    );
    expect(s.tunnels().map((t) => [t.id, t.iface])).toEqual([
      ["a", "wg-s2s-paris"],
      ["b", defaultInterfaceName("wg-s2s-", "b")],
      ["c", defaultInterfaceName("wg-s2s-", "c")],
      ["d", defaultInterfaceName("wg-s2s-", "d")],
    ]);
  });

  it("gives each tunnel the lowest free port; a running tunnel keeps its port", async () => {
    const s = await run(service(), desired(tunnel("a", { remote_subnets: ["10.1.0.0/16"] }), tunnel("b", { remote_subnets: ["10.2.0.0/16"], listen_port: 51824 })));
    expect(s.tunnels().map((t) => [t.id, t.port])).toEqual([["a", 51823], ["b", 51824]]);
    // A newcomer listed first does not move the running ones.
    await run(s, desired(tunnel("c", { remote_subnets: ["10.3.0.0/16"] }), tunnel("a", { remote_subnets: ["10.1.0.0/16"] }), tunnel("b", { remote_subnets: ["10.2.0.0/16"], listen_port: 51824 })));
    expect(Object.fromEntries(s.tunnels().map((t) => [t.id, t.port]))).toEqual({ a: 51823, b: 51824, c: 51825 });
    // a goes, c changes: c keeps 51825 (its remote gateway knows it), though 51823 is free now.
    await run(s, desired(tunnel("c", { remote_subnets: ["10.3.0.0/16"], psk }), tunnel("b", { remote_subnets: ["10.2.0.0/16"], listen_port: 51824 })));
    expect(Object.fromEntries(s.tunnels().map((t) => [t.id, t.port]))).toEqual({ b: 51824, c: 51825 });
  });

  it("refuses only the newcomer past max_tunnels", async () => {
    const cfg = config({ site_to_site_defaults: { max_tunnels: 2 } });
    const s = await run(service(), desired(tunnel("a", { remote_subnets: ["10.1.0.0/16"] }), tunnel("b", { remote_subnets: ["10.2.0.0/16"] })), cfg);
    await run(s, desired(tunnel("c", { remote_subnets: ["10.3.0.0/16"] }), tunnel("a", { remote_subnets: ["10.1.0.0/16"] }), tunnel("b", { remote_subnets: ["10.2.0.0/16"] })), cfg);
    expect(s.tunnels().map((t) => t.id).sort()).toEqual(["a", "b"]);
    expect(reasons(s)).toEqual({ c: "more than bridge.site_to_site_defaults.max_tunnels (2) tunnels" });
  });

  it("refuses bad tunnels with every reason, and applies nothing for them", async () => {
    const cfg = config({ access_interface: "lan0", access_subnets: ["192.168.50.0/24"], relay: { listen_port: 51821 } });
    const s = await run(
      service(),
      desired(
        tunnel("ok", { remote_subnets: ["172.16.0.0/16"] }),
        tunnel("overlap", { remote_subnets: ["172.16.5.0/24"] }),
        tunnel("default", { remote_subnets: ["0.0.0.0/0"] }),
        tunnel("default6", { remote_subnets: ["::/0"] }),
        tunnel("short", { remote_subnets: ["64.0.0.0/4"] }),
        tunnel("mesh", { remote_subnets: ["10.100.3.0/24"] }),
        tunnel("access", { remote_subnets: ["192.168.0.0/16"] }),
        tunnel("meshport", { remote_subnets: ["172.17.0.0/16"], listen_port: 51820 }),
        tunnel("relayport", { remote_subnets: ["172.18.0.0/16"], listen_port: 51821 }),
        tunnel("self", { remote_subnets: ["192.168.10.0/25"] }),
        { tunnel_id: "garbage", remote_endpoint: "nowhere", remote_public_key: "x", remote_subnets: ["300.1.1.1/8"], type: "ipsec" },
        tunnel("ok", { remote_subnets: ["172.19.0.0/16"] }),
      ),
      cfg,
    );
    expect(s.tunnels().map((t) => t.id)).toEqual(["ok"]);
    expect(reasons(s)).toEqual({
      overlap: "remote subnet 172.16.5.0/24 overlaps a remote subnet of tunnel ok",
      default: "remote_subnets[0]: 0.0.0.0/0 is a default route",
      default6: "remote_subnets[0]: ::/0 is a default route",
      short: "remote_subnets[0]: 64.0.0.0/4 is shorter than /8 (mesh.min_route_prefix_v4); refused unless mesh.allow_default_route is true",
      mesh: "remote_subnets[0]: 10.100.3.0/24 overlaps the mesh range (10.100.0.0/16)",
      access: "remote_subnets[0]: 192.168.0.0/16 overlaps an access subnet of this bridge (192.168.50.0/24)",
      meshport: "listen_port: 51820 is mesh.listen_port",
      relayport: "listen_port: 51821 is bridge.relay.listen_port",
      self: "remote_subnets[0]: 192.168.10.0/25 overlaps local_subnets 192.168.10.0/24",
      garbage: "type: only wireguard is supported; remote_public_key: must be a 32-byte base64 WireGuard key",
      ok: "duplicate tunnel_id in site_to_site_config.tunnels",
    });
    // Only the admitted tunnel reaches the kernel part.
    expect(s.kernel().interfaces?.map((i) => i.peers[0]?.allowedIps)).toEqual([["172.16.0.0/16"]]);
  });

  it("reports the field errors of an unparsable tunnel and a bad endpoint", async () => {
    const s = await run(service(), desired(tunnel("ep", { remote_endpoint: "no port here" }), tunnel("cidr", { remote_subnets: ["192.168.20.0/24", "not-a-cidr"] })));
    expect(reasons(s)).toEqual({ ep: "remote_endpoint: must be host:port", cidr: "remote_subnets[1]: not-a-cidr is not a CIDR" });
  });

  it("accepts only pinned tunnels when bridge.site_to_site lists some", async () => {
    const cfg = config({ site_to_site: [{ name: "hq", type: "wireguard", remote_endpoint: "203.0.113.7:51820", remote_subnets: ["192.168.0.0/16"] }] });
    const s = await run(service(), desired(tunnel("hq"), tunnel("branch", { remote_subnets: ["172.16.0.0/16"] })), cfg);
    expect(s.tunnels().map((t) => t.id)).toEqual(["hq"]);
    expect(reasons(s).branch).toBe("not in bridge.site_to_site (pinned tunnels only: hq)");
    await run(s, desired(tunnel("hq", { remote_endpoint: "198.51.100.1:51820", remote_subnets: ["172.16.0.0/16"] })), cfg);
    expect(s.tunnels()).toEqual([]);
    expect(reasons(s).hq).toBe("remote_endpoint: 198.51.100.1:51820 is not the pinned 203.0.113.7:51820; remote_subnets[0]: 172.16.0.0/16 is not inside the pinned subnets of hq");
  });

  it("resolves a host name endpoint once; a name that does not resolve refuses the tunnel", async () => {
    const asked: string[] = [];
    const resolve = (h: string) => (asked.push(h), h === "gw.example.net" ? Promise.resolve("198.51.100.9") : Promise.reject(Object.assign(new Error("nope"), { code: "ENOTFOUND" })));
    const s = await run(service({ resolve }), desired(tunnel("a", { remote_endpoint: "gw.example.net:51820" }), tunnel("b", { remote_endpoint: "nx.example.net:51820", remote_subnets: ["10.9.0.0/16"] })));
    expect(s.kernel().interfaces?.[0]?.peers[0]?.endpoint).toBe("198.51.100.9:51820");
    expect(reasons(s).b).toBe("remote_endpoint: cannot resolve nx.example.net: ENOTFOUND");
    await run(s, desired(tunnel("a", { remote_endpoint: "gw.example.net:51820" })));
    expect(asked.filter((h) => h === "gw.example.net")).toHaveLength(1);
  });

  it("an absent block leaves the tunnels; an empty list removes them", async () => {
    const s = await run(service(), desired(tunnel("hq")));
    await run(s, {});
    expect(s.tunnels()).toHaveLength(1);
    await run(s, desired());
    expect(s.tunnels()).toEqual([]);
    expect(s.kernel()).toEqual({ interfaces: [], forwarding: [], forward: [] });
  });

  it("status: counters, heartbeat, capabilities with each tunnel's key and port; the PSK never shows", async () => {
    const { log, lines } = recordingLog();
    const s = await run(service({ log }), desired(tunnel("hq", { psk }), tunnel("bad", { remote_subnets: ["0.0.0.0/0"] })));
    const st = s.status();
    const pub = (await deviceKey(dataDir, defaultInterfaceName("wg-s2s-", "hq"))).publicKey;
    expect(st.counters).toEqual({ tunnels: 1, tunnels_refused: 1 });
    expect(st.heartbeat).toEqual({ enabled: true, tunnel_count: 1 });
    expect(st.bridgeHeartbeat).toEqual({ site_to_site_enabled: true, active_site_to_site_tunnels: 1 });
    expect(st.capabilities).toEqual({ site_to_site: "true", max_site_to_site_tunnels: "10", site_to_site_public_key_hq: pub, site_to_site_listen_port_hq: "51823" });
    expect(st.detail).toBe(`1 tunnel: hq ${defaultInterfaceName("wg-s2s-", "hq")} :51823 → 203.0.113.7:51820 (192.168.20.0/24); refused: bad: remote_subnets[0]: 0.0.0.0/0 is a default route`);
    expect(lines.join("")).toContain("site-to-site tunnel added");
    expect(lines.join("")).toContain("site-to-site tunnel refused");
    expect(JSON.stringify(st) + lines.join("")).not.toContain(psk);
  });

  it("same id, other content: the tunnel is replaced with the same interface, key and port", async () => {
    const s = await run(service(), desired(tunnel("hq")));
    const before = s.tunnels()[0]!;
    const newKey = generateWireGuardKeyPair().publicKey;
    await run(s, desired(tunnel("hq", { remote_public_key: newKey })));
    const after = s.tunnels()[0]!;
    expect([after.iface, after.port, after.publicKey]).toEqual([before.iface, before.port, before.publicKey]);
    expect(s.kernel().interfaces?.[0]?.peers[0]?.publicKey).toBe(newKey);
  });
});

describe("site-to-site through the manager (fake privhelper)", () => {
  it("applies the device before the routes, puts the rules in the bridge chains, removes the device when the tunnel goes", async () => {
    const order: string[] = [];
    let bridge: BridgeDesired = desired(tunnel("hq"));
    const m = new BridgeManager({
      priv: {
        applyRoutes: (req) => (order.push(`routes ${[...(req?.spec?.forwarding ?? [])].sort().join(",")}`), Promise.resolve({ result: { changed: true, plan: [] } } as never)),
        applyMesh: (req) => (order.push(`${req?.remove ? "remove" : "mesh"} ${req?.spec?.interface ?? ""}`), Promise.resolve({ result: { changed: true, plan: [] } } as never)),
      },
      config: () => config(),
      store: { state: { peers: {}, policies: [], metadata: {}, data: [], secret_refs: [], deferred: {}, get bridge() { return bridge; } }, subscribe: () => () => undefined },
      health: { set: () => undefined, clear: () => undefined },
      log: createLogger({ name: "test", level: "silent" }),
      signal: new AbortController().signal,
      onFirewallChange: () => undefined,
    });
    m.register(service());
    await m.sync("test");
    const iface = defaultInterfaceName("wg-s2s-", "hq");
    expect(order).toEqual([`mesh ${iface}`, `routes plexd0,${iface}`]);
    const fwd = m.bridgeChains().find((c) => c.name === "plexd-bridge-fwd")!;
    expect(fwd.rules.map((r) => [r.iifname, r.ctEstablished, r.srcCidr, r.dstCidr, r.action])).toEqual([
      [iface, true, "", "", RuleAction.ACCEPT],
      [iface, false, "192.168.20.0/24", "192.168.10.0/24", RuleAction.ACCEPT],
      [iface, false, "", "", RuleAction.DROP],
    ]);
    expect(m.heartbeat()).toMatchObject({ bridge: { site_to_site_enabled: true, active_site_to_site_tunnels: 1 }, site_to_site: { enabled: true, tunnel_count: 1 } });
    order.length = 0;
    bridge = desired();
    await m.sync("test");
    expect(order).toEqual([`remove ${iface}`, "routes "]);
    expect(m.bridgeChains().find((c) => c.name === "plexd-bridge-fwd")).toBeUndefined();
  });
});
