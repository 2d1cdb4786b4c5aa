import { addAddress, addNamespace, addRoute, addVethPair, nftApply, setSysctl } from "./netns.js";
import type { Topology } from "./topology.js";

// A site behind a NAT router, for NAT traversal tests and `npm run demo -- --nat`. The router
// is a node of a topology (its eth0 on the hub, which plays the internet); the site is a new
// namespace on the router's LAN:
//
//   hub br0 ── eth0 router (192.0.2.N, the public address) lan0 198.18.I.1/24 ── eth0 site 198.18.I.2/24
//
// Linux masquerade without `random` keeps the source port when it can and maps one inside
// ip:port to one outside ip:port whatever the destination (endpoint-independent mapping);
// `fully-random` picks a port per connection, which is what a symmetric NAT does.

export type NatMapping = "endpoint-independent" | "symmetric";

export interface NatSiteOptions {
  /** The topology node that becomes the router. */
  router: string;
  /** 1-254: the site LAN is 198.18.<index>.0/24 (RFC 2544 benchmarking space). */
  index: number;
  /** Name of the site namespace (under the topology id); default `s<index>`. */
  name?: string;
  mapping?: NatMapping;
}

export interface NatSite {
  /** The site namespace, where a node behind the NAT runs. */
  ns: string;
  /** The site's own (private) address. */
  ip: string;
  mapping: NatMapping;
  /** The router: its namespace and its public address on the hub. */
  router: { name: string; ns: string; ip: string };
}

export function natRuleset(mapping: NatMapping): string {
  const masquerade = mapping === "symmetric" ? "masquerade fully-random" : "masquerade";
  // Like a home router, drop what arrives from outside for the router itself. Besides realism
  // this matters for hole punching: a peer's datagram that reaches the router before the node
  // behind it has sent anything would otherwise leave a conntrack entry (router:51820 ↔ peer)
  // that clashes with the node's own mapping, so masquerade would move the node to another
  // port and both sides would keep punching the wrong holes. A dropped packet's entry is never
  // confirmed, so nothing is left behind.
  return (
    `table ip nat {\n  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname "eth0" ${masquerade}\n  }\n}\n` +
    `table ip filter {\n  chain input {\n    type filter hook input priority filter; policy accept;\n    iifname "eth0" ct state new drop\n  }\n}\n`
  );
}

/** Turns topology node `opts.router` into a NAT router and builds the site behind it. */
export async function addNatSite(topo: Topology, opts: NatSiteOptions): Promise<NatSite> {
  if (!Number.isInteger(opts.index) || opts.index < 1 || opts.index > 254) throw new Error(`addNatSite: index ${opts.index} is not 1-254`);
  const r = topo.node(opts.router);
  const mapping = opts.mapping ?? "endpoint-independent";
  const lan = `198.18.${opts.index}`;
  // The namespace is registered for cleanup by addNamespace, and takes the veth along.
  const ns = await addNamespace(`${topo.id}-${opts.name ?? `s${opts.index}`}`);
  await addVethPair(ns, "eth0", r.ns, "lan0");
  await addAddress(r.ns, "lan0", `${lan}.1/24`);
  await addAddress(ns, "eth0", `${lan}.2/24`);
  await addRoute(ns, "default", { via: `${lan}.1` });
  await setSysctl(r.ns, "net.ipv4.ip_forward", 1);
  await nftApply(r.ns, natRuleset(mapping));
  return { ns, ip: `${lan}.2`, mapping, router: { name: r.name, ns: r.ns, ip: r.ip } };
}
