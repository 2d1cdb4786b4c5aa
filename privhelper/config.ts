// privhelper reads the root-owned config itself and only the keys it needs: it must not trust
// the agent for its allow-lists, nor fail on keys that are the agent's business. Validation
// is small and local on purpose: privhelper imports nothing from agent/.
import { readFile } from "node:fs/promises";
import { parse } from "yaml";
import { PlexdError } from "../proto/lib/errors.js";
import { bridgeInterfacesFrom, isBridgeWireGuard, type BridgeInterfaces } from "./bridge-config.js";

export interface PrivConfig {
  readonly meshInterface: string;
  readonly socket: string;
  readonly chainName: string;
  readonly tokenFile: string;
  /** Exact interface names privhelper may create, configure and delete. */
  readonly allowedInterfaces: readonly string[];
  /** mesh.allow_default_route: a peer may route any prefix, 0.0.0.0/0 and ::/0 included (full tunnel). */
  readonly allowDefaultRoute: boolean;
  /** mesh.min_route_prefix_v4/_v6: otherwise, shorter prefixes are refused (0.0.0.0/1 + 128.0.0.0/1 is a default route too). */
  readonly minRoutePrefix: { 4: number; 6: number };
  /** mesh.full_tunnel_table: the routing table of 0.0.0.0/0 and ::/0, and the device's fwmark (wg-quick's 51820). */
  readonly fullTunnelTable: number;
  /** hooks.dir: the only directory whose files HashFiles and RunSandboxed accept. */
  readonly hooksDir: string;
  /** data_dir: InstallUpgrade takes releases only from its upgrade/ directory. */
  readonly dataDir: string;
  /** actions.upgrade_root: where InstallUpgrade installs a release (`/` on a real node). */
  readonly upgradeRoot: string;
  /** logs.tail_files: absolute globs of the root-only files TailFile may read; empty serves none. */
  readonly tailFiles: readonly string[];
  /** mode: bridge only: the interfaces ApplyRoutes and bridge firewall rules may name. */
  readonly bridge?: BridgeInterfaces | undefined;
  /** mode: bridge with bridge.ingress.enabled: ApplyFirewall may redirect a port below 1024 to the agent. */
  readonly ingressRedirects: boolean;
}

/** The mesh interface, and with mode: bridge the user-access and site-to-site WireGuard devices. */
export const isAllowedInterface = (cfg: PrivConfig, name: string): boolean => cfg.allowedInterfaces.includes(name) || isBridgeWireGuard(cfg, name);

export const defaultConfigPath = "/etc/plexd/config.yaml";

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

export function privConfigFrom(doc: unknown): PrivConfig {
  const issues: string[] = [];
  const root = isObj(doc) ? doc : {};
  const get = (path: string, dflt: string | boolean | number, ok: (v: never) => boolean, msg: string) => {
    const [section = "", key = ""] = path.split(".");
    const v = isObj(root[section]) ? root[section][key] : undefined;
    if (v === undefined || v === null) return dflt;
    if (typeof v !== typeof dflt || !ok(v as never)) issues.push(`${path}: ${msg}`);
    return typeof v === typeof dflt ? (v as typeof dflt) : dflt;
  };
  const abs = (v: string) => v.startsWith("/") && !v.split("/").includes("..");
  // IFNAMSIZ is 16 with the NUL; the plexd prefix keeps the allow-list off foreign interfaces.
  const meshInterface = get("mesh.interface", "plexd0", (v: string) => /^plexd[a-z0-9_-]{0,10}$/.test(v), "must match ^plexd[a-z0-9_-]{0,10}$") as string;
  const dataDir = root.data_dir ?? "/var/lib/plexd";
  if (typeof dataDir !== "string" || !abs(dataDir)) issues.push("data_dir: must be an absolute path");
  const config = {
    meshInterface,
    socket: get("privhelper.socket", "/run/plexd-priv/privhelper.sock", abs, "must be an absolute path") as string,
    chainName: get("policy.chain_name", "plexd-mesh", (v: string) => /^[A-Za-z0-9_-]{1,31}$/.test(v), "must match ^[A-Za-z0-9_-]{1,31}$") as string,
    tokenFile: get("token.file", "/etc/plexd/bootstrap-token", abs, "must be an absolute path") as string,
    hooksDir: get("hooks.dir", "/etc/plexd/hooks.d", abs, "must be an absolute path") as string,
    dataDir: String(dataDir),
    upgradeRoot: get("actions.upgrade_root", "/", abs, "must be an absolute path") as string,
    allowedInterfaces: Object.freeze([meshInterface]),
    allowDefaultRoute: get("mesh.allow_default_route", false, () => true, "must be true or false") as boolean,
    minRoutePrefix: {
      4: get("mesh.min_route_prefix_v4", 8, (v: number) => Number.isInteger(v) && v >= 1 && v <= 32, "must be 1-32") as number,
      6: get("mesh.min_route_prefix_v6", 16, (v: number) => Number.isInteger(v) && v >= 1 && v <= 128, "must be 1-128") as number,
    },
    tailFiles: Object.freeze([...globList(root, "logs.tail_files", abs, issues), ...k8sAuditLog(root, abs, issues)]),
    ingressRedirects: ingressOn(root),
    fullTunnelTable: get("mesh.full_tunnel_table", 51820, (v: number) => Number.isInteger(v) && v >= 1 && v < 2 ** 31 && (v < 253 || v > 255), "must be 1-2147483647, not 253-255 (default, main, local)") as number,
    bridge: bridgeInterfacesFrom(root, issues),
  };
  if (issues.length > 0) throw new PlexdError("invalid_argument", `invalid configuration:\n  ${issues.join("\n  ")}`);
  return Object.freeze(config);
}

/**
 * The Kubernetes API server audit log is TailFile's too, once the config names it: `kubernetes`
 * in audit.sources, or audit.kubernetes_log_path set (audit.enabled not false).
 */
function k8sAuditLog(root: Obj, abs: (v: string) => boolean, issues: string[]): string[] {
  const audit = isObj(root.audit) ? root.audit : {};
  if (audit.enabled === false) return [];
  const path = audit.kubernetes_log_path;
  const listed = Array.isArray(audit.sources) && audit.sources.includes("kubernetes");
  if (path === undefined || path === null) return listed ? ["/var/log/kubernetes/audit/audit.log"] : [];
  if (typeof path !== "string" || !abs(path)) {
    issues.push("audit.kubernetes_log_path: must be an absolute path");
    return [];
  }
  return [path];
}

/** A list of absolute paths/globs; each bad item is named by its index. */
function globList(root: Obj, path: string, abs: (v: string) => boolean, issues: string[]): string[] {
  const [section = "", key = ""] = path.split(".");
  const v = isObj(root[section]) ? root[section][key] : undefined;
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) {
    issues.push(`${path}: must be a list of absolute paths (globs allowed)`);
    return [];
  }
  const ok = v.filter((g, i): g is string => {
    const good = typeof g === "string" && abs(g);
    if (!good) issues.push(`${path}[${i}]: must be an absolute path (globs allowed)`);
    return good;
  });
  return ok;
}

/** Anything but exactly `mode: bridge` and `bridge.ingress.enabled: true` leaves redirects off. */
function ingressOn(root: Obj): boolean {
  const ingress = isObj(root.bridge) && isObj(root.bridge.ingress) ? root.bridge.ingress : {};
  return root.mode === "bridge" && ingress.enabled === true;
}

/** A missing file means defaults (privhelper may start before the agent is configured). */
export async function loadPrivConfig(path: string): Promise<PrivConfig> {
  const text = await readFile(path, "utf8").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw PlexdError.from(err);
  });
  if (text === undefined) return privConfigFrom({});
  try {
    return privConfigFrom(parse(text));
  } catch (err) {
    if (err instanceof PlexdError) throw err;
    throw new PlexdError("invalid_argument", `${path}: not valid YAML: ${(err as Error).message}`, { cause: err });
  }
}
