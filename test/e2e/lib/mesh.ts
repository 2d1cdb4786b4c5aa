import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { LaunchedMockcp } from "../../../mockcp/launch.js";
import { spawnInNamespace, wgShow, type SystemUsers, type Topology } from "../harness/index.js";
import { stunPort } from "./cp.js";
import { createNode, type Executables, type LaunchWrap, type PlexdNode } from "./node.js";

// Mesh-level helpers shared by the mesh, policy and drift suites.

export const identityOf = (n: PlexdNode): { node_id: string; mesh_ip: string } =>
  JSON.parse(readFileSync(join(n.dataDir, "identity.json"), "utf8")) as { node_id: string; mesh_ip: string };
export const meshIp = (n: PlexdNode): string => identityOf(n).mesh_ip;
export const nodeId = (n: PlexdNode): string => identityOf(n).node_id;

export interface JoinOptions {
  topo: Topology;
  cp: LaunchedMockcp;
  api: string;
  users: SystemUsers;
  name: string;
  /** Namespace to run in; default the topology node called `name` (e.g. a NAT site's namespace instead). */
  ns?: string;
  config?: Record<string, unknown>;
  /** Default: the built bundles in dist/. */
  executables?: Executables;
  /** Restrictions around privhelper's and the agent's argv (lib/unit-sandbox.ts). */
  wrap?: LaunchWrap;
}

/** Registers a node and starts privhelper + agent; NAT traversal points at mockcp's STUN responder on the hub. */
export async function joinNode(o: JoinOptions): Promise<PlexdNode> {
  const { token } = await o.cp.client.createToken();
  const n = createNode({
    name: o.name,
    ns: o.ns ?? o.topo.node(o.name).ns,
    api: o.api,
    caFile: o.cp.caFile,
    users: o.users,
    token,
    ...(o.executables ? { executables: o.executables } : {}),
    config: {
      reconcile: { interval: "10s" },
      heartbeat: { interval: "5s" },
      nat_traversal: { enabled: true, stun_servers: [`${o.topo.hub.ip}:${stunPort}`], refresh_interval: "10s", timeout: "2s" },
      ...o.config,
    },
    ...(o.wrap ? { wrap: o.wrap } : {}),
  });
  await n.startPrivhelper();
  n.startAgent();
  await n.agent!.waitForLine(/"msg":"registered"|identity loaded/, 30_000);
  return n;
}

/** A ping running in the background across the mesh; returns sent/received when stopped. */
export function continuousPing(from: PlexdNode, toIp: string) {
  const p = spawnInNamespace({ ns: from.ns, name: `ping-${from.name}`, argv: ["ping", "-i", "0.2", "-W", "1", toIp] });
  return {
    async stop(): Promise<{ sent: number; received: number }> {
      p.signal("SIGINT");
      await p.waitForExit(5000);
      const m = /(\d+) packets transmitted, (\d+) received/.exec(p.output());
      return { sent: Number(m?.[1] ?? 0), received: Number(m?.[2] ?? 0) };
    },
  };
}

/** The endpoint `from`'s WireGuard device holds for `to` (null: no such peer, or no device). */
export async function peerEndpoint(cp: LaunchedMockcp, from: PlexdNode, to: PlexdNode): Promise<string | null> {
  const dev = await wgShow(from.ns, from.iface).catch(() => undefined);
  const key = (await cp.client.getNode(nodeId(to))).public_key;
  return dev?.peers.find((p) => p.publicKey === key)?.endpoint ?? null;
}
