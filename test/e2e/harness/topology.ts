import { cleanupMark, cleanupRange, cleanupSince, CleanupError } from "./cleanup.js";
import { nsExec, type ExecOptions, type ExecResult } from "./exec.js";
import { addAddress, addBridge, addNamespace, addRoute, addVethPair, setMaster } from "./netns.js";
import { nextId, RUN_PREFIX } from "./runId.js";

// The default e2e underlay: a "hub" namespace holding a Linux bridge, and one namespace per
// node wired into it by a veth pair. The hub has no link to the machine's own namespace, so
// nothing sent in a topology can leave it.
//
//   node ns  eth0 (192.0.2.N/24) ──veth── vhN ┐
//                                             ├─ br0 (192.0.2.1/24)   hub ns
//   node ns  eth0 (192.0.2.M/24) ──veth── vhM ┘

export interface TopologyOptions {
  /** A count (named n1..nN) or explicit names ([a-z0-9-], at most 20 chars). */
  nodes: number | readonly string[];
  /** IPv4 underlay, default 192.0.2.0/24 (TEST-NET-1). The hub gets .1, nodes .2, .3, ... */
  subnet?: string;
  /** Default route in each node via the hub (default true). */
  defaultRoute?: boolean;
}

export interface TopologyNode {
  name: string;
  ns: string;
  /** Underlay address. */
  ip: string;
  /** Underlay address with prefix length, e.g. 192.0.2.2/24. */
  cidr: string;
  /** Underlay interface inside the node namespace. */
  iface: string;
  /** Hub-side veth peer (inside the hub namespace). */
  hubIface: string;
}

export interface Topology {
  /** Short id: the namespaces are named `<id>-hub`, `<id>-<node>`. */
  id: string;
  subnet: string;
  prefixLen: number;
  hub: { ns: string; ip: string; cidr: string; bridge: string };
  nodes: TopologyNode[];
  node(name: string): TopologyNode;
  exec(ns: string, argv: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Removes everything this topology created (also done by the harness cleanup). */
  destroy(): Promise<void>;
}

function parseIPv4(ip: string): number {
  const parts = ip.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`bad IPv4 ${ip}`);
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

export function hostInSubnet(subnet: string, index: number): { ip: string; prefixLen: number } {
  const [base, len] = subnet.split("/");
  const prefixLen = Number(len);
  if (!base || !Number.isInteger(prefixLen) || prefixLen < 8 || prefixLen > 30) throw new Error(`bad subnet ${subnet}`);
  const size = 2 ** (32 - prefixLen);
  if (index < 1 || index >= size - 1) throw new Error(`subnet ${subnet} has no host #${index}`);
  const network = (parseIPv4(base) & (prefixLen === 0 ? 0 : (~0 << (32 - prefixLen)) >>> 0)) >>> 0;
  return { ip: formatIPv4((network + index) >>> 0), prefixLen };
}

export async function createTopology(opts: TopologyOptions): Promise<Topology> {
  const subnet = opts.subnet ?? "192.0.2.0/24";
  const names = typeof opts.nodes === "number" ? Array.from({ length: opts.nodes }, (_, i) => `n${i + 1}`) : [...opts.nodes];
  if (names.length === 0) throw new Error("createTopology: no nodes");
  for (const n of names) if (!/^[a-z0-9][a-z0-9-]{0,19}$/.test(n)) throw new Error(`bad node name ${JSON.stringify(n)}`);
  if (new Set(names).size !== names.length) throw new Error("createTopology: duplicate node names");

  const id = `${RUN_PREFIX}-t${nextId()}`;
  const mark = cleanupMark();
  try {
    const hubAddr = hostInSubnet(subnet, 1);
    const bridge = "br0";
    const hubNs = await addNamespace(`${id}-hub`);
    await addBridge(hubNs, bridge);
    await addAddress(hubNs, bridge, `${hubAddr.ip}/${hubAddr.prefixLen}`);

    const nodes: TopologyNode[] = [];
    for (const [i, name] of names.entries()) {
      const addr = hostInSubnet(subnet, i + 2);
      const ns = await addNamespace(`${id}-${name}`);
      const hubIface = `vh${i + 1}`;
      const iface = "eth0";
      await addVethPair(ns, iface, hubNs, hubIface);
      await setMaster(hubNs, hubIface, bridge);
      const cidr = `${addr.ip}/${addr.prefixLen}`;
      await addAddress(ns, iface, cidr);
      if (opts.defaultRoute ?? true) await addRoute(ns, "default", { via: hubAddr.ip });
      nodes.push({ name, ns, ip: addr.ip, cidr, iface, hubIface });
    }
    // destroy() removes what the topology itself registered (its namespaces with every process
    // still inside them), not the test's later temp dirs or processes elsewhere.
    const until = cleanupMark();
    const destroy = async (): Promise<void> => {
      const failures = await cleanupRange(mark, until);
      if (failures.length > 0) throw new CleanupError(failures);
    };

    return {
      id,
      subnet,
      prefixLen: hubAddr.prefixLen,
      hub: { ns: hubNs, ip: hubAddr.ip, cidr: `${hubAddr.ip}/${hubAddr.prefixLen}`, bridge },
      nodes,
      node(name) {
        const n = nodes.find((x) => x.name === name);
        if (!n) throw new Error(`topology ${id} has no node ${name}`);
        return n;
      },
      exec: (ns, argv, eopts) => nsExec(ns, argv, eopts),
      destroy,
    };
  } catch (error) {
    // A half-built topology is removed at once, not left for the end of the test.
    await cleanupSince(mark);
    throw error;
  }
}
