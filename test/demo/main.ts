import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { cleanupAll, createTopology, ensureSystemUsers, nsExec, ping, wgShow, type Topology } from "../e2e/harness/index.js";
import { cpPort, startCpOnHub, stunPort } from "../e2e/lib/cp.js";
import { createNode, type PlexdNode } from "../e2e/lib/node.js";

// `npm run demo`: mockcp and N plexd nodes, each in its own network namespace on an
// underlay bridge, each with a real privhelper and the agent running as user plexd. Shows
// registration, the mesh forming over wireguard-go, and pings across mesh IPs; then tears
// everything down (or, with --keep, waits for Ctrl-C so you can look around).

const { values } = parseArgs({
  options: {
    nodes: { type: "string", default: "3" },
    keep: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log("usage: npm run demo [-- --nodes N] [-- --keep]\n  --nodes N  number of nodes (2-8, default 3)\n  --keep     stay up until Ctrl-C so you can explore (ip netns exec <ns> wg show)");
  process.exit(0);
}
const count = Number(values.nodes);
if (!Number.isInteger(count) || count < 2 || count > 8) {
  console.error("--nodes must be 2..8");
  process.exit(2);
}
if ((process.getuid?.() ?? 1) !== 0) {
  console.error("the demo creates network namespaces and needs root");
  process.exit(2);
}

const say = (msg: string): void => console.log(`[demo] ${msg}`);
const step = (msg: string): void => console.log(`\n== ${msg}`);

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

function identity(node: PlexdNode): { node_id: string; mesh_ip: string } | undefined {
  try {
    return JSON.parse(readFileSync(join(node.dataDir, "identity.json"), "utf8")) as { node_id: string; mesh_ip: string };
  } catch {
    return undefined;
  }
}

async function main(): Promise<number> {
  step("setting up");
  const users = await ensureSystemUsers();
  const names = Array.from({ length: count }, (_, i) => `node${i + 1}`);
  const topo: Topology = await createTopology({ nodes: names });
  say(`underlay ${topo.subnet}: hub namespace ${topo.hub.ns} (${topo.hub.ip}), nodes ${topo.nodes.map((n) => `${n.ns} (${n.ip})`).join(", ")}`);
  const cp = await startCpOnHub(topo, { stun: true });
  const api = `https://${topo.hub.ip}:${cpPort}`;
  say(`mockcp listening on ${api} (TLS, CA ${cp.caFile}), pid ${cp.pid}`);

  step("registering nodes (agent as user plexd, privhelper as root, one pair per namespace)");
  const nodes: PlexdNode[] = [];
  for (const name of names) {
    const { token } = await cp.client.createToken();
    const node = createNode({
      name,
      ns: topo.node(name).ns,
      api,
      caFile: cp.caFile,
      users,
      token,
      config: {
        reconcile: { interval: "10s" },
        // mockcp's own STUN responder on the hub stands in for public STUN servers.
        nat_traversal: { enabled: true, stun_servers: [`${topo.hub.ip}:${stunPort}`], refresh_interval: "10s", timeout: "2s" },
      },
    });
    await node.startPrivhelper();
    node.startAgent();
    nodes.push(node);
  }
  for (const node of nodes) {
    const id = await waitFor(`${node.name} to register`, async () => identity(node));
    say(`${node.name}: registered as ${id.node_id}, mesh IP ${id.mesh_ip}`);
  }
  const registered = await cp.client.listNodes();
  say(`mockcp lists ${registered.length} nodes: ${registered.map((n) => `${n.hostname}=${n.mesh_ip}`).join(", ")}`);

  step("policy: nodes are default-deny; the control plane opens the mesh between them");
  const open = [{ id: "demo-mesh", rules: [{ src: "*", dst: "*", port: 0, protocol: "", action: "allow" }] }];
  for (const node of nodes) await cp.client.setPolicies(identity(node)!.node_id, open);
  say(`policy "demo-mesh" (allow * -> *) pushed to every node as policy_updated`);

  step("mesh forming (wg show)");
  for (const node of nodes) {
    const wg = await waitFor(`${node.name} to configure ${count - 1} peers`, async () => {
      const w = await wgShow(node.ns, node.iface);
      return w.peers.length === count - 1 ? w : undefined;
    });
    say(`${node.name}: interface ${node.iface} listening on ${wg.listenPort}, ${wg.peers.length} peers: ${wg.peers.map((p) => `${p.allowedIps.join(",")} via ${p.endpoint ?? "(no endpoint)"}`).join("; ")}`);
  }

  step("pinging across mesh IPs");
  let failures = 0;
  for (const from of nodes) {
    for (const to of nodes) {
      if (from === to) continue;
      const target = identity(to)?.mesh_ip ?? "";
      const r = await ping(from.ns, target, { count: 3, timeoutMs: 10_000 });
      say(`${from.name} -> ${to.name} (${target}): ${r.received}/3 replies${r.ok ? "" : "  FAILED"}`);
      if (!r.ok) failures++;
    }
  }
  for (const node of nodes) {
    const wg = await wgShow(node.ns, node.iface);
    const shaken = wg.peers.filter((p) => p.latestHandshake > 0).length;
    say(`${node.name}: ${shaken}/${wg.peers.length} peers with a completed handshake`);
  }

  step(failures === 0 ? "mesh is up: every node reached every other over WireGuard" : `${failures} ping pairs failed`);
  if (values.keep) {
    say("staying up; explore in another terminal, for example:");
    for (const node of nodes) say(`  ip netns exec ${node.ns} wg show ${node.iface}     # ${node.name}`);
    say(`  ip netns exec ${nodes[0]?.ns ?? ""} ping ${identity(nodes[1]!)?.mesh_ip ?? ""}`);
    say(`  node dist/plexd.js config check ${nodes[0]?.configFile ?? ""}`);
    say("press Ctrl-C to tear everything down");
    await new Promise<void>((resolve) => {
      process.once("SIGINT", () => resolve());
      process.once("SIGTERM", () => resolve());
    });
  }
  await nsExec(topo.hub.ns, ["true"]);
  return failures === 0 ? 0 : 1;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  console.error(`[demo] failed: ${(err as Error).message}`);
} finally {
  step("tearing down");
  const errors = await cleanupAll();
  for (const e of errors) console.error(`[demo] cleanup: ${e.label}: ${String(e.error)}`);
  say(errors.length === 0 ? "everything removed (namespaces, processes, temp dirs)" : "cleanup had errors");
}
process.exit(code);
