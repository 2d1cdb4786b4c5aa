import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { cleanupAll, ensureSystemUsers, RUN_PREFIX, wgShow } from "../e2e/harness/index.js";
import { cpPort, startCpOnHub } from "../e2e/lib/cp.js";
import { createNode, type PlexdNode } from "../e2e/lib/node.js";
import { buildLayout, type DemoHost } from "./layout.js";
import { pingMatrix } from "./matrix.js";

// `npm run demo`: mockcp and N plexd nodes, each in its own network namespace, each with a real
// privhelper and the agent running as user plexd. Shows registration, NAT discovery with STUN,
// the mesh forming over wireguard-go, and a ping matrix across mesh IPs; then tears everything
// down (or, with --keep, waits for Ctrl-C so you can look around). With --nat every node sits
// behind its own masquerading router and the tunnels go through the NATs.

const usage = `usage: npm run demo [-- --nodes N] [-- --nat] [-- --keep]
  --nodes N  number of nodes (2-8, default 3)
  --nat      put each node behind its own NAT router (a namespace doing nftables masquerade);
             the nodes discover their public endpoints with STUN (mockcp's responders on the
             demo's "internet", never public servers) and tunnel directly through the NATs
  --keep     stay up until Ctrl-C so you can explore (ip netns exec <ns> wg show)`;

const { values } = parseArgs({
  options: {
    nodes: { type: "string", default: "3" },
    nat: { type: "boolean", default: false },
    keep: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log(usage);
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
const nat = values.nat;

const say = (msg: string): void => console.log(`[demo] ${msg}`);
const step = (msg: string): void => console.log(`\n== ${msg}`);

// Ctrl-C or SIGTERM at any point: stop waiting and tear down. Staying subscribed also keeps the
// harness's own signal handler from re-raising the signal before our teardown has finished.
let stopping = false;
let wake = (): void => undefined;
const stopRequested = new Promise<void>((resolve) => (wake = resolve));
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (!stopping) console.log(`\n[demo] ${sig}: tearing down`);
    stopping = true;
    wake();
  });
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (stopping) throw new Error("interrupted");
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
  step(nat ? "setting up: every node behind its own NAT router" : "setting up");
  const users = await ensureSystemUsers();
  const names = Array.from({ length: count }, (_, i) => `node${i + 1}`);
  const layout = await buildLayout(names, nat);
  const { topo, hosts } = layout;
  say(`run prefix ${RUN_PREFIX}: every namespace and temp dir of this demo starts with it`);
  for (const line of layout.describe()) say(line);
  const cp = await startCpOnHub(topo, { stunResponders: layout.stunServers });
  const api = `https://${topo.hub.ip}:${cpPort}`;
  say(`mockcp listening on ${api} (TLS, CA ${cp.caFile}), pid ${cp.pid}; STUN responders ${layout.stunServers.join(", ")}`);

  step("registering nodes (agent as user plexd, privhelper as root, one pair per namespace)");
  const nodes: PlexdNode[] = [];
  const hostOf = new Map<PlexdNode, DemoHost>();
  for (const [i, host] of hosts.entries()) {
    const { token } = await cp.client.createToken();
    const node = createNode({
      name: host.name,
      ns: host.ns,
      // wireguard-go's UAPI socket (/var/run/wireguard/NAME.sock) is machine-wide: the run
      // prefix keeps this demo's interfaces apart from any other demo or test running here.
      iface: `plexd${RUN_PREFIX.slice(2)}${i + 1}`,
      api,
      caFile: cp.caFile,
      users,
      token,
      config: {
        reconcile: { interval: "10s" },
        // Behind NAT both sides must send for the routers to let the other in (hole punching);
        // a short keepalive makes those first handshakes come sooner than the 25 s default.
        ...(nat ? { mesh: { persistent_keepalive: "5s" } } : {}),
        nat_traversal: { enabled: true, stun_servers: layout.stunServers, refresh_interval: "10s", timeout: "2s" },
      },
    });
    await node.startPrivhelper();
    node.startAgent();
    nodes.push(node);
    hostOf.set(node, host);
  }
  for (const node of nodes) {
    const id = await waitFor(`${node.name} to register`, async () => identity(node));
    say(`${node.name}: registered as ${id.node_id}, mesh IP ${id.mesh_ip}`);
  }
  const registered = await cp.client.listNodes();
  say(`mockcp lists ${registered.length} nodes: ${registered.map((n) => `${n.hostname}=${n.mesh_ip}`).join(", ")}`);
  const nameOfKey = new Map(registered.map((n) => [n.public_key, n.hostname]));
  const hostByName = new Map(hosts.map((h) => [h.name, h]));

  step("policy: nodes are default-deny; the control plane opens the mesh between them");
  const open = [{ id: "demo-mesh", rules: [{ src: "*", dst: "*", port: 0, protocol: "", action: "allow" }] }];
  for (const node of nodes) await cp.client.setPolicies(identity(node)!.node_id, open);
  say(`policy "demo-mesh" (allow * -> *) pushed to every node as policy_updated`);

  step("NAT discovery: STUN from each node's mesh port (sent by privhelper), reported to the control plane");
  for (const node of nodes) {
    const host = hostOf.get(node)!;
    const ep = await waitFor(`${node.name} to report its public endpoint`, async () => {
      const e = (await cp.client.getNode(identity(node)!.node_id)).endpoint;
      return e && e.public_endpoint.startsWith(`${host.publicIp}:`) && e.nat_type !== "unknown" ? e : undefined;
    });
    const why = host.router ? `${host.router.name}'s public address; the node itself has ${host.ownIp}` : "its own address: no NAT on the path";
    say(`${node.name}: public endpoint ${ep.public_endpoint}, NAT type ${ep.nat_type} (${why})`);
    // The node's own view, from its node API, as an operator would ask it.
    const status = await node.plexd(["status", "--socket", node.apiSocket], { timeoutMs: 15_000 });
    const seen = /^NAT\s+(.+)$/m.exec(status.output)?.[1];
    say(`${node.name}: plexd status: NAT ${seen ?? `not shown (exit ${status.exitCode}: ${status.output.trim().split("\n")[0]?.slice(0, 160)})`}`);
  }

  step("mesh forming: each peer's WireGuard endpoint is its public endpoint (wg show)");
  for (const node of nodes) {
    const wg = await waitFor(`${node.name} to configure ${count - 1} peers with their public endpoints`, async () => {
      const w = await wgShow(node.ns, node.iface);
      const ready = w.peers.length === count - 1 && w.peers.every((p) => p.endpoint?.startsWith(`${hostByName.get(nameOfKey.get(p.publicKey) ?? "")?.publicIp}:`));
      return ready ? w : undefined;
    });
    const peers = wg.peers.map((p) => `${nameOfKey.get(p.publicKey)} ${p.allowedIps.join(",")} via ${p.endpoint}`);
    say(`${node.name}: interface ${node.iface} listening on ${wg.listenPort}, ${wg.peers.length} peers: ${peers.join("; ")}`);
  }

  step(nat ? "handshakes: keepalives from both sides open each NAT for the other (hole punching)" : "handshakes");
  const t0 = Date.now();
  for (const node of nodes) {
    // Not fatal: the ping matrix below shows what a missing handshake means.
    const done = await waitFor(`${node.name}'s handshakes`, async () => ((await wgShow(node.ns, node.iface)).peers.every((p) => p.latestHandshake > 0) ? true : undefined), 45_000).catch((err: unknown) => {
      if (stopping) throw err;
      return false;
    });
    say(`${node.name}: ${done ? `handshake with every peer (${((Date.now() - t0) / 1000).toFixed(1)} s)` : "some peers without a handshake after 45 s"}`);
  }

  step("ping matrix over mesh IPs (replies/sent, row pings column)");
  const matrix = await pingMatrix(nodes.map((n) => ({ name: n.name, ns: n.ns, meshIp: identity(n)!.mesh_ip })));
  // Ctrl-C during the pings: the harness is already removing the namespaces under them.
  if (stopping) return 130;
  for (const line of matrix.lines) say(line);
  say(`ping matrix: ${matrix.answered}/${matrix.pairs} pairs answered`);
  if (matrix.queued) say("(more than 3 sent: a pair's first pings waited for its handshake)");

  step("tunnels after the pings (wg show: WireGuard's endpoint is where the peer's packets came from)");
  const now = Date.now() / 1000;
  for (const node of nodes) {
    const wg = await wgShow(node.ns, node.iface);
    for (const p of wg.peers) {
      const peer = hostByName.get(nameOfKey.get(p.publicKey) ?? "");
      const via = peer?.router ? ` = ${peer.router.name}'s public address` : "";
      const shake = p.latestHandshake > 0 ? `handshake ${Math.max(0, Math.round(now - p.latestHandshake))} s ago` : "no handshake";
      say(`${node.name} -> ${peer?.name ?? "?"}: endpoint ${p.endpoint ?? "(none)"}${via}, ${shake}, rx ${p.rxBytes} B, tx ${p.txBytes} B`);
    }
  }

  const ok = matrix.answered === matrix.pairs;
  step(ok ? `mesh is up: every node reached every other over WireGuard${nat ? ", directly through the NATs" : ""}` : `${matrix.pairs - matrix.answered} ping pairs failed`);
  if (values.keep && !stopping) {
    say("staying up; explore in another terminal, for example:");
    for (const node of nodes) say(`  ip netns exec ${node.ns} wg show ${node.iface}     # ${node.name}`);
    say(`  ip netns exec ${nodes[0]!.ns} ping ${identity(nodes[1]!)?.mesh_ip ?? ""}`);
    const r = hosts[0]?.router;
    if (r) say(`  ip netns exec ${r.ns} nft list ruleset     # ${r.name}'s masquerade`);
    say("press Ctrl-C to tear everything down");
    await stopRequested;
    return ok ? 0 : 1;
  }
  // Interrupted before the end: the result is not a verdict on the mesh.
  if (stopping) return 130;
  return ok ? 0 : 1;
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
