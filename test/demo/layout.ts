import { addNatSite, createTopology, hostInSubnet, type Topology } from "../e2e/harness/index.js";

// Where the demo's nodes live. Plain: each node is a namespace on the underlay hub, reachable
// at its own address. --nat: the hub plays the internet, each node sits on its own LAN behind a
// router namespace doing nftables masquerade (harness/nat.ts, shared with the NAT e2e test),
// and the only address anyone outside sees is the router's.

export interface DemoHost {
  name: string;
  ns: string;
  /** The address the node itself has. */
  ownIp: string;
  /** The address peers must use: the router's behind NAT, else the node's own. */
  publicIp: string;
  router?: { name: string; ns: string };
}

export interface DemoLayout {
  topo: Topology;
  hosts: DemoHost[];
  /** mockcp's STUN responders on the hub ("internet"), never public servers. */
  stunServers: string[];
  describe(): string[];
}

export async function buildLayout(names: readonly string[], nat: boolean): Promise<DemoLayout> {
  const routers = names.map((_, i) => `router${i + 1}`);
  const topo = await createTopology({ nodes: nat ? routers : names });
  // Two responders: the agent tells full_cone from symmetric by comparing two answers.
  const stunServers = [200, 201].map((host, i) => `${hostInSubnet(topo.subnet, host).ip}:${3478 + i}`);
  const hosts: DemoHost[] = [];
  for (const [i, name] of names.entries()) {
    if (!nat) {
      const n = topo.node(name);
      hosts.push({ name, ns: n.ns, ownIp: n.ip, publicIp: n.ip });
      continue;
    }
    const site = await addNatSite(topo, { router: routers[i]!, index: i + 1, name, mapping: "endpoint-independent" });
    hosts.push({ name, ns: site.ns, ownIp: site.ip, publicIp: site.router.ip, router: { name: site.router.name, ns: site.router.ns } });
  }
  const describe = (): string[] =>
    nat
      ? [
          `internet ${topo.subnet}: hub namespace ${topo.hub.ns} (${topo.hub.ip})`,
          ...hosts.map((h) => `${h.name}: namespace ${h.ns}, address ${h.ownIp}, behind ${h.router!.name} (${h.router!.ns}, public ${h.publicIp}, nftables masquerade)`),
        ]
      : [`underlay ${topo.subnet}: hub namespace ${topo.hub.ns} (${topo.hub.ip}), nodes ${hosts.map((h) => `${h.ns} (${h.ownIp})`).join(", ")}`];
  return { topo, hosts, stunServers, describe };
}
