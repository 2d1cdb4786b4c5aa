// privhelper reads the root-owned config itself and only the keys it needs: it must not trust
// the agent for its allow-lists, nor fail on keys that are the agent's business. Validation
// is small and local on purpose: privhelper imports nothing from agent/.
import { readFile } from "node:fs/promises";
import { parse } from "yaml";
import { PlexdError } from "../proto/lib/errors.js";

export interface PrivConfig {
  readonly meshInterface: string;
  readonly socket: string;
  readonly hooksDir: string;
  readonly chainName: string;
  readonly tokenFile: string;
  readonly mode: "node" | "bridge";
  /** Exact interface names privhelper may create/configure/delete. */
  readonly allowedInterfaces: readonly string[];
  /** Bridge mode: site-to-site interfaces are `<prefix><8 hex>` (bridge spec 2.6); "" otherwise. */
  readonly siteToSitePrefix: string;
  /** mesh.allow_default_route: a peer may route 0.0.0.0/0 or ::/0 (full tunnel). */
  readonly allowDefaultRoute: boolean;
}

/** The interface allow-list (design.md 2): exact configured names, or a site-to-site name. */
export function isAllowedInterface(cfg: PrivConfig, name: string): boolean {
  if (cfg.allowedInterfaces.includes(name)) return true;
  return cfg.siteToSitePrefix !== "" && name.startsWith(cfg.siteToSitePrefix) && /^[0-9a-f]{8}$/.test(name.slice(cfg.siteToSitePrefix.length));
}

export const defaultConfigPath = "/etc/plexd/config.yaml";

// Linux IFNAMSIZ is 16 including the NUL; the mesh name keeps the plexd prefix so the
// allow-list can never point at a foreign interface (node-agent.md 2.2).
const meshNameRe = /^plexd[a-z0-9_-]{0,10}$/;
const bridgeNameRe = /^[A-Za-z0-9_-]{1,15}$/;
const chainRe = /^[A-Za-z0-9_-]{1,31}$/;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

export function privConfigFrom(doc: unknown): PrivConfig {
  const issues: string[] = [];
  const root = isObj(doc) ? doc : {};
  const section = (k: string): Obj => (isObj(root[k]) ? root[k] : {});
  const str = (obj: Obj, key: string, path: string, dflt: string, check: (v: string) => boolean, msg: string): string => {
    const v = obj[key];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== "string" || !check(v)) {
      issues.push(`${path}: ${msg}`);
      return dflt;
    }
    return v;
  };
  const abs = (v: string) => v.startsWith("/") && !v.split("/").includes("..");

  const meshInterface = str(section("mesh"), "interface", "mesh.interface", "plexd0", (v) => meshNameRe.test(v), "must match ^plexd[a-z0-9_-]{0,10}$");
  const socket = str(section("privhelper"), "socket", "privhelper.socket", "/run/plexd-priv/privhelper.sock", abs, "must be an absolute path");
  const hooksDir = str(section("hooks"), "dir", "hooks.dir", "/etc/plexd/hooks.d", abs, "must be an absolute path");
  const chainName = str(section("policy"), "chain_name", "policy.chain_name", "plexd-mesh", (v) => chainRe.test(v), "must match ^[A-Za-z0-9_-]{1,31}$");
  const tokenFile = str(section("token"), "file", "token.file", "/etc/plexd/bootstrap-token", abs, "must be an absolute path");
  const modeStr = str(root, "mode", "mode", "node", (v) => v === "node" || v === "bridge", "must be node or bridge");
  const mode = modeStr === "bridge" ? "bridge" : "node";
  const fullTunnel = section("mesh").allow_default_route ?? false;
  if (typeof fullTunnel !== "boolean") issues.push("mesh.allow_default_route: must be true or false");

  const allowed = [meshInterface];
  let s2sPrefix = "";
  if (mode === "bridge") {
    const bridge = section("bridge");
    const access = Array.isArray(bridge.access) ? bridge.access : [];
    access.forEach((a, i) => {
      if (!isObj(a) || a.type !== "wireguard") return;
      allowed.push(str(a, "interface_name", `bridge.access[${i}].interface_name`, "wg-access", (v) => bridgeNameRe.test(v), "must be 1-15 of [A-Za-z0-9_-]"));
    });
    const defaults = isObj(bridge.site_to_site_defaults) ? bridge.site_to_site_defaults : {};
    s2sPrefix = str(defaults, "interface_prefix", "bridge.site_to_site_defaults.interface_prefix", "wg-s2s-", (v) => /^[A-Za-z0-9_-]{1,7}$/.test(v), "must be 1-7 of [A-Za-z0-9_-]");
  }
  if (issues.length > 0) throw new PlexdError("invalid_argument", `invalid configuration:\n  ${issues.join("\n  ")}`);
  return Object.freeze({
    meshInterface,
    socket,
    hooksDir,
    chainName,
    tokenFile,
    mode,
    allowedInterfaces: Object.freeze([...new Set(allowed)]),
    siteToSitePrefix: s2sPrefix,
    allowDefaultRoute: fullTunnel === true,
  });
}

/** A missing file means defaults (privhelper may start before the agent is configured). */
export async function loadPrivConfig(path: string): Promise<PrivConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return privConfigFrom({});
    throw PlexdError.from(err);
  }
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new PlexdError("invalid_argument", `${path}: not valid YAML: ${(err as Error).message}`, { cause: err });
  }
  return privConfigFrom(doc);
}
