// The bridge services this agent runs (docs/bridge.md#overview): one factory per service. A
// new service adds one line here; the manager starts and stops each on its own.
import type { Logger } from "../util/log.js";
import { AccessRouting } from "./access.js";
import { IngressService } from "./ingress.js";
import { RelayService } from "./relay.js";
import type { BridgeService } from "./service.js";
import { SiteToSiteService } from "./site-to-site.js";
import { deviceKey } from "./device-keys.js";

export interface BridgeServiceDeps {
  log: Logger;
  dataDir: string;
  /** The peers' allowed_ips (ingress targets may lie there besides the mesh range). */
  peerPrefixes?: () => readonly string[];
}

export const bridgeServiceFactories: ((deps: BridgeServiceDeps) => BridgeService)[] = [
  () => new AccessRouting(),
  (d) => new IngressService({ log: d.log.child({ service: "ingress" }), ...(d.peerPrefixes ? { peerPrefixes: d.peerPrefixes } : {}) }),
  ({ log }) => new RelayService({ log: log.child({ service: "relay" }) }),
  (d) => new SiteToSiteService({ log: d.log.child({ service: "site_to_site" }), dataDir: d.dataDir, deviceKey, ...(d.peerPrefixes ? { peerPrefixes: d.peerPrefixes } : {}) }),
];
