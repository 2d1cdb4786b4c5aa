import { chmodSync } from "node:fs";
import { join } from "node:path";
import { startMockcp, type LaunchedMockcp } from "../../../mockcp/launch.js";
import { makeTempDir, registerCleanup, type Topology } from "../harness/index.js";

// mockcp on the underlay: inside the topology's hub namespace, TLS on, with its control API
// also on a unix socket so the test (in the root namespace) can drive it.

export const cpPort = 8443;
/** mockcp's own STUN responder on the hub (a stand-in for the public STUN servers). */
export const stunPort = 3478;

export async function startCpOnHub(topo: Topology, opts: { extraArgs?: string[]; keepalive?: string; stun?: boolean } = {}): Promise<LaunchedMockcp> {
  // The agent (user plexd) must read ca.pem: the state dir is world-traversable.
  const stateDir = makeTempDir("mockcp", { mode: 0o755 });
  const cp = await startMockcp({
    netns: topo.hub.ns,
    listen: [`https://${topo.hub.ip}:${cpPort}`],
    stateDir,
    stderr: "pipe",
    logLevel: "info",
    ...(opts.keepalive ? { keepalive: opts.keepalive } : {}),
    extraArgs: [...(opts.stun ? ["--stun-listen", `${topo.hub.ip}:${stunPort}`] : []), ...(opts.extraArgs ?? [])],
  });
  registerCleanup(`mockcp pid ${cp.pid}`, () => cp.stop());
  chmodSync(join(stateDir), 0o755);
  return cp;
}
