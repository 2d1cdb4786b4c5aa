import { chmodSync } from "node:fs";
import { join } from "node:path";
import { startMockcp, type LaunchedMockcp } from "../../../mockcp/launch.js";
import { addAddress, makeTempDir, registerCleanup, spawnInNamespace, type Topology } from "../harness/index.js";

// mockcp on the underlay: inside the topology's hub namespace, TLS on, with its control API
// also on a unix socket so the test (in the root namespace) can drive it.

export const cpPort = 8443;
/** Debian's stund on the hub: the real STUN server standing in for public ones. */
export const stunPort = 3478;

export interface CpOnHubOptions {
  extraArgs?: string[];
  keepalive?: string;
  /** Also start Debian's stund on the hub (port `stunPort`). */
  stun?: boolean;
  /** mockcp's own STUN responders, `IPV4:PORT` each; addresses not yet on the hub are added to its bridge. */
  stunResponders?: readonly string[];
  /** plexd-mockcp to run; default the built bundle in dist/. */
  bin?: string;
}

export async function startCpOnHub(topo: Topology, opts: CpOnHubOptions = {}): Promise<LaunchedMockcp> {
  // The agent (user plexd) must read ca.pem: the state dir is world-traversable.
  const stateDir = makeTempDir("mockcp", { mode: 0o755 });
  const responders = opts.stunResponders ?? [];
  for (const ip of new Set(responders.map((r) => r.slice(0, r.lastIndexOf(":"))))) {
    if (ip !== topo.hub.ip) await addAddress(topo.hub.ns, topo.hub.bridge, `${ip}/${topo.prefixLen}`);
  }
  const cp = await startMockcp({
    netns: topo.hub.ns,
    listen: [`https://${topo.hub.ip}:${cpPort}`],
    stateDir,
    stderr: "pipe",
    logLevel: "info",
    ...(opts.keepalive ? { keepalive: opts.keepalive } : {}),
    ...(responders.length > 0 ? { stunListen: [...responders] } : {}),
    extraArgs: opts.extraArgs ?? [],
    ...(opts.bin ? { bin: opts.bin } : {}),
  });
  registerCleanup(`mockcp pid ${cp.pid}`, () => cp.stop());
  if (opts.stun) await startStunServer(topo);
  chmodSync(join(stateDir), 0o755);
  return cp;
}

/** RFC 3489/5389 server from Debian's stun-server package; it wants a second address. */
export async function startStunServer(topo: Topology): Promise<void> {
  const secondary = topo.hub.ip.replace(/\.\d+$/, ".254");
  await addAddress(topo.hub.ns, topo.hub.bridge, `${secondary}/${topo.prefixLen}`);
  const p = spawnInNamespace({ ns: topo.hub.ns, name: "stund", argv: ["stund", "-h", topo.hub.ip, "-a", secondary, "-p", String(stunPort)] });
  // stund prints nothing when not verbose; give it a moment to bind, and fail fast if it died.
  await new Promise((r) => setTimeout(r, 300));
  if (p.exited) throw new Error(`stund exited: ${p.output()}`);
}

/**
 * mockcp in the harness's own namespace on 127.0.0.1 (TLS on, a free port), for an agent that
 * runs there too (lib/node.ts `hostNetns`): it talks to nothing but loopback.
 */
export async function startCpOnLoopback(): Promise<LaunchedMockcp> {
  // The agent (user plexd) must read ca.pem: the state dir is world-traversable.
  const stateDir = makeTempDir("mockcp", { mode: 0o755 });
  const cp = await startMockcp({ listen: ["https://127.0.0.1:0"], stateDir, stderr: "pipe", logLevel: "info" });
  registerCleanup(`mockcp pid ${cp.pid}`, () => cp.stop());
  chmodSync(stateDir, 0o755);
  return cp;
}
