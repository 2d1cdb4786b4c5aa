// Pure: desired mesh + live device and routes → the minimal plan. WireGuard installs no routes (wg-quick does, in userspace), so the plan
// keeps one per allowed IP via the device — added only where no route of another owner exists, removed only where privhelper made it.
import { parseCidr } from "../../proto/lib/net.js";
import { routeProtocol, tunnelRules, type LiveLink, type LiveRoute, type LiveRule } from "../os/ip.js";
import type { WgChange, WgDevice, WgLiveDevice, WgPeer } from "../os/wg.js";

/** mtu 0 leaves the kernel's alone; addresses are canonical CIDRs, sorted. */
export interface DesiredMesh extends WgDevice { interface: string; mtu: number; addresses: string[] }

/** `routes`: the main table of the whole namespace (default routes: the full-tunnel table's); `rules`: privhelper's. */
export interface Live { link: LiveLink | undefined; wg: WgLiveDevice | undefined; routes: LiveRoute[]; rules?: LiveRule[] | undefined }

export interface Step { kind: string; detail: string }

/** diffMesh's answer. `upsert`: device fields and peers to add or update; `foreignRoutes`: wanted, but another owner's route has that destination. */
export type MeshPlan = ReturnType<typeof diffMesh>;

const same = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/** Field names that differ; an empty desired endpoint means "don't care" (it roams). */
export function peerChanges(want: WgPeer, live: WgPeer): string[] {
  const out: string[] = [];
  if (want.presharedKey !== live.presharedKey) out.push("preshared_key");
  if (want.endpoint !== "" && want.endpoint !== live.endpoint) out.push("endpoint");
  if (!same(want.allowedIps, live.allowedIps)) out.push("allowed_ips");
  if (want.keepalive !== live.keepalive) out.push("persistent_keepalive");
  return out;
}

/** The prefix routes the kernel makes itself for these interface addresses. */
export function kernelPrefixes(addresses: readonly string[]): Set<string> {
  const cidrs = addresses.map((a) => parseCidr(a, true)).filter((c) => c !== undefined);
  return new Set(cidrs.filter((c) => c.bits < (c.family === 4 ? 32 : 128)).map((c) => c.cidr));
}

/** Routes via `iface` to make exactly `wanted` privhelper's own there. */
export function planRoutes(iface: string, wanted: ReadonlySet<string>, routes: readonly LiveRoute[], kernelMade: ReadonlySet<string>) {
  const ours = new Set<string>();
  const foreign = new Set(kernelMade);
  for (const r of routes) (r.plexd && r.dev === iface ? ours : foreign).add(r.dst);
  const missing = [...wanted].filter((dst) => !ours.has(dst)).sort();
  return { addRoutes: missing.filter((d) => !foreign.has(d)), removeRoutes: [...ours].filter((d) => !wanted.has(d)).sort(), foreignRoutes: missing.filter((d) => foreign.has(d)) };
}

/** `ip rule` lines per family: the full tunnel's rules (table = fwmark) where a peer has the default route, else none; any mismatch replaces them all. */
export function planRules(want: Pick<DesiredMesh, "fwmark" | "peers">, live: readonly LiveRule[]): Record<4 | 6, string[]> {
  const plan = (f: 4 | 6, wanted: string[], have = live.filter((r) => r.family === f)) =>
    same(have.map((r) => r.rule).sort(), [...wanted].sort()) ? [] : [...have.map((r) => `rule del priority ${r.priority} protocol ${routeProtocol}`), ...wanted.map((r) => `rule add ${r} protocol ${routeProtocol}`)];
  const tunnel = (dflt: string) => (want.fwmark && want.peers.some((p) => p.allowedIps.includes(dflt)) ? tunnelRules(want.fwmark) : []);
  return { 4: plan(4, tunnel("0.0.0.0/0")), 6: plan(6, tunnel("::/0")) };
}

/** `routeScope`: only routes to these destinations are planned (a delta's; live.routes holds just them). */
export function diffMesh(want: DesiredMesh, live: Live, routeScope?: ReadonlySet<string>) {
  const steps: Step[] = [];
  const step = (kind: string, detail: string) => steps.push({ kind, detail });
  const create = live.link === undefined;
  if (create) step("create_interface", want.interface);
  const mtu: number | undefined = want.mtu !== 0 && live.link?.mtu !== want.mtu ? want.mtu : undefined;
  if (mtu !== undefined) step("set_mtu", String(mtu));

  const wg: WgDevice = live.wg ?? { privateKey: "", listenPort: 0, peers: [] };
  const change: WgChange = { upsert: [], remove: [] };
  if (wg.privateKey !== want.privateKey) change.privateKey = want.privateKey;
  if (wg.listenPort !== want.listenPort) change.listenPort = want.listenPort;
  if ((wg.fwmark ?? 0) !== (want.fwmark ?? 0)) change.fwmark = want.fwmark ?? 0;
  if (change.privateKey !== undefined) step("set_private_key", "");
  if (change.listenPort !== undefined) step("set_listen_port", String(change.listenPort));
  if (change.fwmark !== undefined) step("set_fwmark", String(change.fwmark));
  const liveByKey = new Map(wg.peers.map((p) => [p.publicKey, p]));
  for (const p of want.peers) {
    const l = liveByKey.get(p.publicKey);
    const fields = l ? peerChanges(p, l) : [];
    if (l && fields.length === 0) continue;
    change.upsert.push(p);
    step(l ? "update_peer" : "add_peer", l ? `${p.publicKey} ${fields.join(",")}` : p.publicKey);
  }
  const wanted = new Set(want.peers.map((p) => p.publicKey));
  const removePeers = wg.peers.filter((p) => !wanted.has(p.publicKey)).map((p) => p.publicKey);
  for (const k of removePeers) step("remove_peer", k);
  const upsert: WgChange | undefined = change.upsert.length > 0 || change.privateKey !== undefined || change.listenPort !== undefined || change.fwmark !== undefined ? change : undefined;

  const liveAddrs = new Set(live.link?.addresses ?? []);
  const addAddresses = want.addresses.filter((a) => !liveAddrs.has(a));
  const removeAddresses = [...liveAddrs].filter((a) => !want.addresses.includes(a));
  for (const a of addAddresses) step("add_address", a);
  for (const a of removeAddresses) step("remove_address", a);
  const up = !live.link?.up;
  if (up) step("link_up", want.interface);

  // A device about to be made has no routes yet, whatever the read found under its name.
  const wantedRoutes = new Set(want.peers.flatMap((p) => p.allowedIps).filter((d) => routeScope?.has(d) ?? true));
  const routes = planRoutes(want.interface, wantedRoutes, create ? live.routes.filter((r) => r.dev !== want.interface) : live.routes, kernelPrefixes(want.addresses));
  for (const r of routes.addRoutes) step("add_route", r);
  for (const r of routes.removeRoutes) step("remove_route", r);
  const rules = live.rules ? planRules(want, live.rules) : { 4: [], 6: [] };
  for (const f of [4, 6] as const) for (const r of rules[f]) step(r.startsWith("rule add") ? "add_rule" : "remove_rule", `-${f} ${r}`);
  return { steps, create, mtu, upsert, removePeers, addAddresses, removeAddresses, up, ...routes, rules };
}

/** The live state expressed as a spec, so a rollback is just another apply. */
export function liveAsDesired(name: string, live: Live): DesiredMesh | undefined {
  if (!live.link || !live.wg) return undefined;
  const peers = live.wg.peers.map(({ publicKey, presharedKey, endpoint, allowedIps, keepalive }) => ({ publicKey, presharedKey, endpoint, allowedIps, keepalive }));
  return { interface: name, privateKey: live.wg.privateKey, listenPort: live.wg.listenPort, fwmark: live.wg.fwmark ?? 0, mtu: live.link.mtu, addresses: live.link.addresses, peers };
}
