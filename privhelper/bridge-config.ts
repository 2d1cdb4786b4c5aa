// The interfaces a bridge may route through and forward on, read from the root-owned config
// (docs/bridge.md). Only with `mode: bridge`; otherwise ApplyRoutes accepts no interface but
// the mesh one. The user-access and site-to-site names are WireGuard devices ApplyMesh makes
// beside the mesh one (and Teardown deletes); the access interface is the host's own, never.
import type { PrivConfig } from "./config.js";

export interface BridgeInterfaces {
  /** bridge.access_interface ("" when unset). */
  readonly access: string;
  /** bridge.access[type=wireguard].interface_name ("" without WireGuard user access). */
  readonly userAccess: string;
  /** bridge.site_to_site_defaults.interface_prefix. */
  readonly s2sPrefix: string;
}

const ifname = /^[A-Za-z0-9_-]{1,15}$/;
type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** undefined outside bridge mode; `issues` gets one line per bad key. */
export function bridgeInterfacesFrom(root: Obj, issues: string[]): BridgeInterfaces | undefined {
  if (root.mode !== "bridge") return undefined;
  const b = isObj(root.bridge) ? root.bridge : {};
  const name = (v: unknown, key: string, dflt: string, re = ifname): string => {
    if (v === undefined || v === null) return dflt;
    if (typeof v === "string" && (v === dflt || re.test(v))) return v;
    issues.push(`${key}: must be an interface name (1-15 of A-Z, a-z, 0-9, _ and -)`);
    return dflt;
  };
  const wg = (Array.isArray(b.access) ? b.access : []).find((a): a is Obj => isObj(a) && a.type === "wireguard");
  const s2s = isObj(b.site_to_site_defaults) ? b.site_to_site_defaults : {};
  return {
    access: name(b.access_interface, "bridge.access_interface", ""),
    userAccess: wg ? name(wg.interface_name, "bridge.access[].interface_name", "wg-access") : "",
    s2sPrefix: name(s2s.interface_prefix, "bridge.site_to_site_defaults.interface_prefix", "wg-s2s-", /^[A-Za-z0-9_-]{1,7}$/),
  };
}

/** mode: bridge: the user-access interface or a site-to-site one (`<prefix>` and more), WireGuard devices beside the mesh. */
export function isBridgeWireGuard(cfg: PrivConfig, name: string): boolean {
  const b = cfg.bridge;
  if (!b || !ifname.test(name) || name === cfg.meshInterface || name === b.access) return false;
  return (b.userAccess !== "" && name === b.userAccess) || (name.startsWith(b.s2sPrefix) && name.length > b.s2sPrefix.length);
}

/** With mode: bridge, interfaces ApplyRoutes may use and bridge firewall rules may name: the mesh one and the bridge's. */
export const isRouteInterface = (cfg: PrivConfig, name: string): boolean =>
  cfg.bridge !== undefined && (name === cfg.meshInterface || (cfg.bridge.access !== "" && name === cfg.bridge.access) || isBridgeWireGuard(cfg, name));

/** The allow-list in words, for error messages. */
export function routeInterfacesText(cfg: PrivConfig): string {
  const b = cfg.bridge;
  if (!b) return "none: routes and forwarding only with mode: bridge in the config";
  return [cfg.meshInterface, b.access, b.userAccess, `${b.s2sPrefix}*`].filter((x) => x !== "").join(", ");
}
