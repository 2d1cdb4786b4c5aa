// privhelper reads the root-owned config itself and only the keys it needs: it must not trust
// the agent for its allow-lists, nor fail on keys that are the agent's business. Validation
// is small and local on purpose: privhelper imports nothing from agent/.
import { readFile } from "node:fs/promises";
import { parse } from "yaml";
import { PlexdError } from "../proto/lib/errors.js";

export interface PrivConfig {
  readonly meshInterface: string;
  readonly socket: string;
  readonly chainName: string;
  readonly tokenFile: string;
  /** Exact interface names privhelper may create, configure and delete. */
  readonly allowedInterfaces: readonly string[];
  /** mesh.allow_default_route: a peer may route 0.0.0.0/0 or ::/0 (full tunnel). */
  readonly allowDefaultRoute: boolean;
}

export const isAllowedInterface = (cfg: PrivConfig, name: string): boolean => cfg.allowedInterfaces.includes(name);

export const defaultConfigPath = "/etc/plexd/config.yaml";

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

export function privConfigFrom(doc: unknown): PrivConfig {
  const issues: string[] = [];
  const root = isObj(doc) ? doc : {};
  const get = (path: string, dflt: string | boolean, ok: (v: never) => boolean, msg: string) => {
    const [section = "", key = ""] = path.split(".");
    const v = isObj(root[section]) ? root[section][key] : undefined;
    if (v === undefined || v === null) return dflt;
    if (typeof v !== typeof dflt || !ok(v as never)) issues.push(`${path}: ${msg}`);
    return typeof v === typeof dflt ? (v as typeof dflt) : dflt;
  };
  const abs = (v: string) => v.startsWith("/") && !v.split("/").includes("..");
  // IFNAMSIZ is 16 with the NUL; the plexd prefix keeps the allow-list off foreign interfaces.
  const meshInterface = get("mesh.interface", "plexd0", (v: string) => /^plexd[a-z0-9_-]{0,10}$/.test(v), "must match ^plexd[a-z0-9_-]{0,10}$") as string;
  const config = {
    meshInterface,
    socket: get("privhelper.socket", "/run/plexd-priv/privhelper.sock", abs, "must be an absolute path") as string,
    chainName: get("policy.chain_name", "plexd-mesh", (v: string) => /^[A-Za-z0-9_-]{1,31}$/.test(v), "must match ^[A-Za-z0-9_-]{1,31}$") as string,
    tokenFile: get("token.file", "/etc/plexd/bootstrap-token", abs, "must be an absolute path") as string,
    allowedInterfaces: Object.freeze([meshInterface]),
    allowDefaultRoute: get("mesh.allow_default_route", false, () => true, "must be true or false") as boolean,
  };
  if (issues.length > 0) throw new PlexdError("invalid_argument", `invalid configuration:\n  ${issues.join("\n  ")}`);
  return Object.freeze(config);
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
