// Assembles the RPC handlers from their dependencies; main.ts and tests share it. One lock
// per resource, so a slow STUN probe never holds up an apply; Teardown takes them all.
import type { PrivHelperService } from "../proto/gen/plexd/priv/v1/priv_pb.js";
import type { Handlers } from "./adapter.js";
import type { PrivConfig } from "./config.js";
import type { Logger } from "./log.js";
import { uapiSocket } from "./mesh/device.js";
import type { Host } from "./os/host.js";
import { ipTool } from "./os/ip.js";
import type { Runner } from "./os/run.js";
import { uapiBackend } from "./os/uapi.js";
import { wgTool } from "./os/wg.js";
import { makeApplyMesh, type MeshDeps } from "./service/apply-mesh.js";
import { makeApplyRoutes } from "./service/apply-routes.js";
import { makeApplyFirewall, makeReadFirewall } from "./service/firewall.js";
import { makeGetInfo } from "./service/get-info.js";
import { makeHashFiles } from "./service/hook-file.js";
import { makeReadMesh } from "./service/read-mesh.js";
import { makePingPeers, makeTraceroute } from "./service/ping.js";
import { makeRemoveBootstrapToken } from "./service/remove-bootstrap-token.js";
import { makeServiceControl } from "./service/service-control.js";
import { makeRunSandboxed } from "./service/run-sandboxed.js";
import { makeStunProbe } from "./service/stun-probe.js";
import { makeTeardown } from "./service/teardown.js";

/** Runs `fn` after every earlier call has settled: a read-diff-write never interleaves another. */
export type Lock = <T>(fn: () => Promise<T>) => Promise<T>;

export function createLock(): Lock {
  let tail: Promise<unknown> = Promise.resolve();
  return (fn) => {
    const run = tail.then(fn, fn);
    tail = run.catch(() => undefined);
    return run;
  };
}

/** `runDir`: privhelper's root-only runtime directory (the socket's). */
export interface Deps { runner: Runner; host: Host; config: PrivConfig; log: Logger; startedAtMs: number; runDir: string }

export function meshDeps(deps: Deps, meshLock = createLock()): MeshDeps {
  const [uapi, tool] = [uapiBackend(uapiSocket), wgTool(deps.runner, deps.runDir)];
  // A UAPI socket means wireguard-go serves the device; kernel devices have none.
  return { ...deps, ip: ipTool(deps.runner, deps.config.fullTunnelTable), meshLock, wgFor: async (iface) => ((await deps.host.exists(uapiSocket(iface))) ? uapi : tool) };
}

export function buildHandlers(deps: Deps): Handlers<(typeof PrivHelperService)["method"]> {
  const locks = { mesh: createLock(), firewall: createLock(), stun: createLock() };
  const mesh = meshDeps(deps, locks.mesh);
  return {
    getInfo: makeGetInfo(deps),
    applyMesh: makeApplyMesh(mesh),
    readMesh: makeReadMesh(mesh),
    applyFirewall: makeApplyFirewall(deps, locks.firewall),
    readFirewall: makeReadFirewall(deps),
    teardown: makeTeardown(mesh, locks),
    removeBootstrapToken: makeRemoveBootstrapToken(deps),
    stunProbe: makeStunProbe({ ...mesh, lock: locks.stun }),
    hashFiles: makeHashFiles(deps),
    runSandboxed: makeRunSandboxed(deps),
    pingPeers: makePingPeers(deps),
    traceroute: makeTraceroute(deps),
    serviceControl: makeServiceControl(deps),
    // The mesh lock: a bridge applies mesh, then routes; Teardown holds it while it removes both.
    applyRoutes: makeApplyRoutes(deps, locks.mesh),
  };
}
