// The bridge services this agent runs (docs/bridge.md#overview): one factory per service. A
// new service adds one line here; the manager starts and stops each on its own.
import type { Logger } from "../util/log.js";
import { AccessRouting } from "./access.js";
import { IngressService } from "./ingress.js";
import { RelayService } from "./relay.js";
import type { BridgeService } from "./service.js";
import { deviceKey } from "./device-keys.js";
import type { PolicyView } from "./user-access-peers.js";
import { UserAccessService } from "./user-access.js";
import { SiteToSiteService } from "./site-to-site.js";

export interface BridgeServiceDeps {
  log: Logger;
  dataDir: string;
  /** The peers' allowed_ips (ingress targets may lie there besides the mesh range). */
  peerPrefixes?: () => readonly string[];
  /** Policies, the local node and node addresses (user access renders its forward rules from them). */
  policyView?: () => PolicyView | undefined;
}

export const bridgeServiceFactories: ((deps: BridgeServiceDeps) => BridgeService)[] = [
  () => new AccessRouting(),
  (d) => new IngressService({ log: d.log.child({ service: "ingress" }), ...(d.peerPrefixes ? { peerPrefixes: d.peerPrefixes } : {}) }),
  ({ log }) => new RelayService({ log: log.child({ service: "relay" }) }),
  (d) => new UserAccessService({ log: d.log.child({ service: "user_access" }), dataDir: d.dataDir, deviceKey, ...(d.peerPrefixes ? { meshPrefixes: d.peerPrefixes } : {}), ...(d.policyView ? { policyView: d.policyView } : {}) }),
  (d) => new SiteToSiteService({ log: d.log.child({ service: "site_to_site" }), dataDir: d.dataDir, deviceKey, ...(d.peerPrefixes ? { peerPrefixes: d.peerPrefixes } : {}) }),
];
