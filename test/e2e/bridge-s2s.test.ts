import { beforeAll, describe, expect, it } from "vitest";
import { defaultInterfaceName } from "../../agent/bridge/site-to-site-tunnels.js";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { generateWireGuardKeyPair } from "../../proto/lib/keys.js";
import { addAddress, addNamespace, addRoute, addVethPair, createTopology, ensureSystemUsers, nftList, nsExec, ping, registerCleanup, until, useHarness, wgShow, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { joinNode, nodeId } from "./lib/mesh.js";
import type { PlexdNode } from "./lib/node.js";

// Site-to-site VPN through two bridges (docs/bridge.md#site-to-site), on real namespaces:
//
//   lan-a 192.168.10.0/24 ── lan0 [bridge sa] eth0 ── hub ("the internet") ── eth0 [bridge sb] lan0 ── lan-b 192.168.20.0/24
//
// Both bridges are mesh nodes of one mockcp, which gives sa a tunnel to sb and sb one to sa; each
// side's remote_public_key is the other's device key, read from its capabilities. LAN hosts reach
// each other by their LAN addresses through the wg-s2s-* devices; an agent restart keeps them;
// removing the tunnels (by event and by state block) removes the devices, their routes, forwarding
// and rules, and nothing else; bad tunnels are refused with their reasons.

useHarness();

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let sa: PlexdNode;
let sb: PlexdNode;
let lanA: string;
let lanB: string;
const hostA = "192.168.10.10";
/** A second address of LAN A's host, outside what sb may reach (sa's local_subnets is 192.168.10.0/25). */
const hostA2 = "192.168.10.200";
const hostB = "192.168.20.10";
// Tunnel ids carry the run's id: wireguard-go's sockets (/var/run/wireguard/<name>.sock) are machine-wide.
let toB: string;
let toA: string;

const bridgeConfig = (extra: Record<string, unknown> = {}) => ({ mode: "bridge", policy: { default: "allow" }, bridge: { access_interface: "lan0", relay: { enabled: false }, ...extra } });

async function addLan(bridgeNs: string, name: string, gw: string, host: string): Promise<string> {
  const ns = await addNamespace(`${topo.id}-${name}`);
  await addVethPair(bridgeNs, "lan0", ns, "eth0");
  await addAddress(bridgeNs, "lan0", `${gw}/24`);
  await addAddress(ns, "eth0", `${host}/24`);
  await addRoute(ns, "default", { via: gw });
  return ns;
}

const caps = async (n: PlexdNode): Promise<Record<string, string>> => ((await cp.client.capabilities(nodeId(n))).capabilities as { bridge?: Record<string, string> } | null)?.bridge ?? {};

/** This bridge's key and port for `tunnel`, once announced in its capabilities. */
async function announced(n: PlexdNode, tunnel: string): Promise<{ publicKey: string; port: number }> {
  let got: { publicKey: string; port: number } | undefined;
  await expect
    .poll(
      async () => {
        const c = await caps(n);
        const key = c[`site_to_site_public_key_${tunnel}`];
        got = key ? { publicKey: key, port: Number(c[`site_to_site_listen_port_${tunnel}`]) } : undefined;
        return got !== undefined;
      },
      { timeout: 60_000, interval: 1000 },
    )
    .toBe(true);
  return got!;
}

const tunnel = (id: string, o: { endpoint: string; key: string; local: string[]; remote: string[]; extra?: object }) => ({ tunnel_id: id, type: "wireguard", remote_endpoint: o.endpoint, remote_public_key: o.key, local_subnets: o.local, remote_subnets: o.remote, ...(o.extra ?? {}) });
const setTunnels = (n: PlexdNode, tunnels: object[]) => cp.client.setBridgeBlock(nodeId(n), "site_to_site_config", { tunnels });

/** Everything on a bridge that plexd could touch, without counters and handles: compared before and after. */
async function snapshot(n: PlexdNode) {
  const links = (JSON.parse((await nsExec(n.ns, ["ip", "-j", "link", "show"])).stdout) as { ifname: string }[]).map((l) => l.ifname).sort();
  const routes = (await nsExec(n.ns, ["ip", "-4", "route", "show", "table", "all"])).stdout.split("\n").map((l) => l.trim()).filter((l) => l !== "").sort();
  const forwarding = (await nsExec(n.ns, ["sh", "-c", "grep -H . /proc/sys/net/ipv4/conf/*/forwarding /proc/sys/net/ipv4/ip_forward"])).stdout.trim().split("\n").sort();
  const nft = await nftList(n.ns);
  // Grouped by chain, in chain order (a stable sort keeps each chain's order).
  const rules = nft.rules
    .map((r) => ({ chain: `${String(r.table)} ${String(r.chain)}`, text: `${JSON.stringify(r.expr).replace(/"counter":\{[^}]*\}/g, '"counter":{}')} ${JSON.stringify(r.comment ?? "")}` }))
    .sort((x, y) => x.chain.localeCompare(y.chain))
    .map((r) => `${r.chain} ${r.text}`);
  const chains = nft.chains.map((c) => `${String(c.table)} ${String(c.name)} ${String(c.hook ?? "")} ${String(c.policy ?? "")}`).sort();
  const mesh = await wgShow(n.ns, n.iface);
  return { links, routes, forwarding, rules, chains, mesh: { publicKey: mesh.publicKey, listenPort: mesh.listenPort, peers: mesh.peers.map((p) => `${p.publicKey} ${p.allowedIps.join(",")}`).sort() } };
}

const statusLine = async (n: PlexdNode, name: string): Promise<string> => (await n.plexd(["status"])).output.split("\n").filter((l) => new RegExp(`^\\s+${name}\\s`).test(l)).join("\n");
const s2sLinks = async (n: PlexdNode) => (JSON.parse((await nsExec(n.ns, ["ip", "-j", "link", "show"])).stdout) as { ifname: string }[]).map((l) => l.ifname).filter((x) => x.startsWith("wg-s2s-")).sort();

/**
 * An agent started inside a test is stopped when that test ends (the harness cleans up per test),
 * leaving the kernel as it is: the next test starts it again, and its first sync converges.
 */
async function ensureAgent(n: PlexdNode): Promise<void> {
  if (n.agent !== undefined && !n.agent.exited) return;
  n.startAgent();
  await n.agent!.waitForLine(/identity loaded/, 30_000);
}

let before: { sa: Awaited<ReturnType<typeof snapshot>>; sb: Awaited<ReturnType<typeof snapshot>> };

beforeAll(async () => {
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["sa", "sb"] });
  toB = `to-b-${topo.id}`;
  toA = `to-a-${topo.id}`;
  cp = await startCpOnHub(topo, { stun: true });
  const api = `https://${topo.hub.ip}:${cpPort}`;
  lanA = await addLan(topo.node("sa").ns, "lana", "192.168.10.1", hostA);
  await addAddress(lanA, "eth0", `${hostA2}/24`);
  lanB = await addLan(topo.node("sb").ns, "lanb", "192.168.20.1", hostB);
  // sa may hold two tunnels at most (the bad-input case below fills the limit).
  sa = await joinNode({ topo, cp, api, users, name: "sa", config: bridgeConfig({ site_to_site_defaults: { max_tunnels: 2 } }) });
  sb = await joinNode({ topo, cp, api, users, name: "sb", config: bridgeConfig() });
  // The site-to-site service runs (with no tunnels) and the mesh between the bridges is up.
  await until("sa announces site_to_site", async () => (await caps(sa)).site_to_site === "true", 60_000);
  await until("sb announces max_site_to_site_tunnels", async () => (await caps(sb)).max_site_to_site_tunnels === "10", 60_000);
  await until("the bridges are mesh peers", async () => (await wgShow(sa.ns, sa.iface)).peers.length === 1, 60_000);
  before = { sa: await snapshot(sa), sb: await snapshot(sb) };
});

describe("bridge site-to-site", () => {
  it("LAN hosts of two sites reach each other by their LAN addresses through the bridges' tunnels", async () => {
    const saIp = topo.node("sa").ip;
    const sbIp = topo.node("sb").ip;
    // sa first gets a tunnel with a placeholder key: that makes its own device key, which sb needs.
    // (No per-test cleanup for the tunnels: the next tests restart with them and remove them; the
    // devices live in the bridges' namespaces, which go at the end whatever happens.)
    const placeholder = generateWireGuardKeyPair().publicKey;
    await setTunnels(sa, [tunnel(toB, { endpoint: `${sbIp}:51823`, key: placeholder, local: ["192.168.10.0/25"], remote: ["192.168.20.0/24"] })]);
    const a = await announced(sa, toB);
    await setTunnels(sb, [tunnel(toA, { endpoint: `${saIp}:${a.port}`, key: a.publicKey, local: ["192.168.20.0/24"], remote: ["192.168.10.0/24"] })]);
    const b = await announced(sb, toA);
    // Same id, new content (the real key and port of sb), as a single site_to_site_tunnel_assigned
    // event this time: the tunnel is replaced in place.
    const final = tunnel(toB, { endpoint: `${sbIp}:${b.port}`, key: b.publicKey, local: ["192.168.10.0/25"], remote: ["192.168.20.0/24"] });
    expect((await cp.client.setSiteToSiteTunnel(nodeId(sa), toB, final)).event_id).not.toBeNull();

    await expect.poll(async () => (await ping(lanA, hostB, { count: 1, timeoutMs: 3000 })).ok, { timeout: 60_000, interval: 1000 }).toBe(true);
    expect((await ping(lanB, hostA, { count: 2, timeoutMs: 3000 })).ok).toBe(true);

    // wg show on each bridge: the wg-s2s-* device with the other bridge as its one peer.
    const ifA = defaultInterfaceName("wg-s2s-", toB);
    const ifB = defaultInterfaceName("wg-s2s-", toA);
    const wa = await wgShow(sa.ns, ifA);
    const wb = await wgShow(sb.ns, ifB);
    expect([wa.publicKey, wa.listenPort]).toEqual([a.publicKey, a.port]);
    expect([wb.publicKey, wb.listenPort]).toEqual([b.publicKey, b.port]);
    expect(wa.peers.map((p) => [p.publicKey, p.endpoint, p.allowedIps, p.persistentKeepalive])).toEqual([[b.publicKey, `${sbIp}:${b.port}`, ["192.168.20.0/24"], 25]]);
    expect(wb.peers.map((p) => [p.publicKey, p.endpoint, p.allowedIps, p.persistentKeepalive])).toEqual([[a.publicKey, `${saIp}:${a.port}`, ["192.168.10.0/24"], 25]]);
    expect(wa.peers[0]!.latestHandshake).toBeGreaterThan(0);
    // The remote subnet is routed into the device; forwarding is on for it (per interface only).
    expect((await nsExec(sa.ns, ["ip", "-4", "route", "show", "192.168.20.0/24"])).stdout).toContain(`dev ${ifA}`);
    expect((await nsExec(sa.ns, ["sysctl", "-n", `net.ipv4.conf.${ifA}.forwarding`, "net.ipv4.conf.lan0.forwarding", "net.ipv4.conf.all.forwarding"])).stdout.split("\n").slice(0, 3)).toEqual(["1", "1", "0"]);

    // sa's forward chain for the tunnel: replies, then remote → local, then drop, in that order.
    const fwd = (await nftList(sa.ns)).rules.filter((r) => r.chain === "plexd-bridge-fwd").map((r) => JSON.stringify(r.expr));
    expect(fwd.map((e) => [e.includes(ifA), e.includes('"established"'), e.includes('"192.168.20.0"') && e.includes('"len":25'), e.includes('"accept"') ? "accept" : e.includes('"drop"') ? "drop" : "?"])).toEqual([
      [true, true, false, "accept"],
      [true, false, true, "accept"],
      [true, false, false, "drop"],
    ]);
    // sb may reach only sa's local_subnets (192.168.10.0/25): .200 is dropped at sa ...
    expect((await ping(lanB, hostA2, { count: 2, timeoutMs: 3000 })).ok).toBe(false);
    // ... but a connection .200 starts itself gets its replies (established traffic is let back in).
    expect((await nsExec(lanA, ["ping", "-n", "-c", "2", "-W", "2", "-I", hostA2, hostB], { reject: false })).exitCode).toBe(0);

    // Status, heartbeat and capabilities say so.
    expect(await statusLine(sa, "site_to_site")).toMatch(new RegExp(`site_to_site\\s+running\\s+1 tunnel: ${toB} ${ifA} :${a.port} → ${sbIp.replace(/\./g, "\\.")}:${b.port} \\(192\\.168\\.20\\.0/24\\)\\s+\\(tunnels 1, tunnels_refused 0\\)`));
    // ... with the tunnel's handshake and traffic, read from the kernel when asked.
    expect(await statusLine(sa, "device")).toMatch(new RegExp(`device\\s+up\\s+${ifA} on UDP ${a.port}, 1 peer, handshake \\d+(?:m\\d*s?)?s? ago, rx [\\d.]+ (?:B|KiB), tx [\\d.]+ (?:B|KiB)$`));
    await expect.poll(async () => (await cp.client.heartbeats(nodeId(sb))).at(-1)?.body, { timeout: 20_000, interval: 1000 }).toMatchObject({ site_to_site: { enabled: true, tunnel_count: 1 }, bridge: { site_to_site_enabled: true, active_site_to_site_tunnels: 1 } });
  });

  it("an agent restart keeps the tunnel: same device, key and port, and traffic flows on", async () => {
    const ifA = defaultInterfaceName("wg-s2s-", toB);
    const was = await wgShow(sa.ns, ifA);
    await sa.agent?.kill("SIGTERM", { graceMs: 10_000 });
    // The kernel keeps the device while the agent is away.
    expect((await wgShow(sa.ns, ifA)).publicKey).toBe(was.publicKey);
    sa.startAgent();
    await sa.agent!.waitForLine(/identity loaded/, 30_000);
    await expect.poll(async () => (await statusLine(sa, "site_to_site")).includes(`1 tunnel: ${toB} ${ifA} :${was.listenPort}`), { timeout: 30_000, interval: 1000 }).toBe(true);
    const now = await wgShow(sa.ns, ifA);
    expect([now.publicKey, now.listenPort, now.peers.map((p) => p.publicKey)]).toEqual([was.publicKey, was.listenPort, was.peers.map((p) => p.publicKey)]);
    expect((await ping(lanA, hostB, { count: 2, timeoutMs: 3000 })).ok).toBe(true);
  });

  it("removing the tunnels removes the devices, their routes, forwarding and rules, and nothing else", async () => {
    // sa's agent was restarted by the test before, and stopped at its end: it starts with the tunnel it had.
    await ensureAgent(sa);
    await expect.poll(() => statusLine(sa, "site_to_site"), { timeout: 30_000, interval: 1000 }).toContain(`1 tunnel: ${toB}`);
    // sa's goes by a site_to_site_tunnel_revoked event, sb's by its state block.
    expect((await cp.client.removeSiteToSiteTunnel(nodeId(sa), toB)).event_id).not.toBeNull();
    await setTunnels(sb, []);
    await expect.poll(() => s2sLinks(sa), { timeout: 30_000, interval: 500 }).toEqual([]);
    await expect.poll(() => s2sLinks(sb), { timeout: 30_000, interval: 500 }).toEqual([]);
    // Routes, forwarding and rules follow in the same sync; the firewall right after it.
    await expect.poll(() => snapshot(sa), { timeout: 30_000, interval: 1000 }).toEqual(before.sa);
    await expect.poll(() => snapshot(sb), { timeout: 30_000, interval: 1000 }).toEqual(before.sb);
    expect((await ping(lanA, hostB, { count: 2, timeoutMs: 2000 })).ok).toBe(false);
  });

  it("bad tunnels are refused with their reasons in status, and nothing is applied for them", async () => {
    await ensureAgent(sa);
    const key = generateWireGuardKeyPair().publicKey;
    const t = (id: string, remote: string, extra: object = {}) => tunnel(`${id}-${topo.id}`, { endpoint: "192.0.2.250:51820", key, local: ["192.168.10.0/24"], remote: [remote], extra });
    await setTunnels(sa, [
      t("one", "172.16.1.0/24"),
      t("overlap", "172.16.1.128/25"),
      t("default", "0.0.0.0/0"),
      t("meshport", "172.16.5.0/24", { listen_port: 51820 }),
      t("two", "172.16.2.0/24"),
      t("three", "172.16.3.0/24"),
    ]);
    registerCleanup("sa bad tunnels", async () => void (await setTunnels(sa, [])));
    const id = (x: string) => `${x}-${topo.id}`;
    await expect.poll(() => statusLine(sa, "site_to_site"), { timeout: 30_000, interval: 1000 }).toContain("tunnels_refused 4");
    const line = await statusLine(sa, "site_to_site");
    expect(line).toContain(`${id("overlap")}: remote subnet 172.16.1.128/25 overlaps a remote subnet of tunnel ${id("one")}`);
    expect(line).toContain(`${id("default")}: remote_subnets[0]: 0.0.0.0/0 is a default route`);
    expect(line).toContain(`${id("meshport")}: listen_port: 51820 is mesh.listen_port`);
    expect(line).toContain(`${id("three")}: more than bridge.site_to_site_defaults.max_tunnels (2) tunnels`);
    // Only the two good tunnels exist, with their routes; the refused ones left no trace.
    expect(await s2sLinks(sa)).toEqual([defaultInterfaceName("wg-s2s-", id("one")), defaultInterfaceName("wg-s2s-", id("two"))].sort());
    const routes = (await nsExec(sa.ns, ["ip", "-4", "route", "show", "table", "all"])).stdout;
    expect(routes).toContain("172.16.1.0/24 dev wg-s2s-");
    expect(routes).toContain("172.16.2.0/24 dev wg-s2s-");
    for (const r of ["172.16.1.128/25", "172.16.3.0/24", "172.16.5.0/24"]) expect(routes).not.toContain(r);
    expect((await nsExec(sa.ns, ["ip", "-4", "route", "show", "default"])).stdout).not.toContain("wg-s2s-");
    await setTunnels(sa, []);
    await expect.poll(() => snapshot(sa), { timeout: 30_000, interval: 1000 }).toEqual(before.sa);
  });
});
