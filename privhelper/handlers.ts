// Assembles the RPC handlers from their dependencies; main.ts and tests share it.
import type { PrivHelperService } from "../proto/gen/plexd/priv/v1/priv_pb.js";
import type { Handlers } from "./adapter.js";
import type { PrivConfig } from "./config.js";
import type { Logger } from "./log.js";
import type { Host } from "./os/host.js";
import type { Runner } from "./os/runner.js";
import { createLock } from "./lock.js";
import { AppliedSpecs } from "./mesh/base.js";
import { ipTool } from "./os/ip.js";
import { join } from "node:path";
import { uapiDir } from "./mesh/device.js";
import { uapiBackend } from "./os/uapi.js";
import { wgTool } from "./os/wg.js";
import { makeApplyFirewall } from "./service/apply-firewall.js";
import { makeApplyMesh, type MeshDeps } from "./service/apply-mesh.js";
import { makeGetInfo } from "./service/get-info.js";
import { makeReadFirewall } from "./service/read-firewall.js";
import { makeReadMesh } from "./service/read-mesh.js";
import { makeRemoveBootstrapToken } from "./service/remove-bootstrap-token.js";
import { makeStunProbe } from "./service/stun-probe.js";
import { makeTeardown } from "./service/teardown.js";

export interface Deps {
  runner: Runner;
  host: Host;
  config: PrivConfig;
  log: Logger;
  startedAtMs: number;
  /** privhelper's runtime directory (wireguard-go logs). */
  logDir: string;
}

export function meshDeps(deps: Deps): MeshDeps {
  const tool = wgTool(deps.runner);
  const uapi = uapiBackend((iface) => join(uapiDir, `${iface}.sock`));
  return {
    ...deps,
    ip: ipTool(deps.runner),
    // A UAPI socket means wireguard-go serves the device; kernel devices have none.
    wgFor: async (iface) => ((await deps.host.exists(join(uapiDir, `${iface}.sock`))) ? uapi : tool),
    lock: createLock(),
    applied: new AppliedSpecs(),
  };
}

type Methods = (typeof PrivHelperService)["method"] extends infer M ? { [K in keyof M]: M[K] } : never;

export function buildHandlers(deps: Deps): Handlers<Methods> {
  const mesh = meshDeps(deps);
  return {
    getInfo: makeGetInfo(deps),
    applyMesh: makeApplyMesh(mesh),
    readMesh: makeReadMesh(mesh),
    applyFirewall: makeApplyFirewall(deps),
    readFirewall: makeReadFirewall(deps),
    teardown: makeTeardown(mesh),
    removeBootstrapToken: makeRemoveBootstrapToken(deps),
    stunProbe: makeStunProbe(mesh),
  };
}
