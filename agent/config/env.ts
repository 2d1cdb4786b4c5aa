// Environment variables of docs/config-reference.md. Only these are honoured; there is no
// generic key-to-variable mapping. PLEXD_CONFIG picks the file (see load.ts);
// PLEXD_BOOTSTRAP_TOKEN is read by the token sources through `token.env`, and
// PLEXD_SESSION_TOKEN belongs to the CLI, so neither appears here.
import type { ConfigIssue } from "./config-error.js";

export type EnvKind = "string" | "bool" | "int";

export interface EnvOverride {
  readonly variable: string;
  readonly path: readonly string[];
  readonly kind: EnvKind;
}

export const envOverrides: readonly EnvOverride[] = [
  { variable: "PLEXD_API", path: ["api"], kind: "string" },
  { variable: "PLEXD_MODE", path: ["mode"], kind: "string" },
  { variable: "PLEXD_LOG_LEVEL", path: ["log_level"], kind: "string" },
  { variable: "PLEXD_BOOTSTRAP_TOKEN_FILE", path: ["token", "file"], kind: "string" },
  { variable: "PLEXD_ACTIONS_ENABLED", path: ["actions", "enabled"], kind: "bool" },
  { variable: "PLEXD_ACTIONS_MAX_CONCURRENT", path: ["actions", "max_concurrent"], kind: "int" },
  { variable: "PLEXD_HOOKS_ENABLED", path: ["hooks", "enabled"], kind: "bool" },
  { variable: "PLEXD_HOOKS_DIR", path: ["hooks", "dir"], kind: "string" },
  { variable: "PLEXD_NODE_API_ENABLED", path: ["node_api", "enabled"], kind: "bool" },
  { variable: "PLEXD_NODE_API_SOCKET", path: ["node_api", "socket"], kind: "string" },
  { variable: "PLEXD_NODE_API_HTTP_ENABLED", path: ["node_api", "http", "enabled"], kind: "bool" },
  { variable: "PLEXD_NODE_API_HTTP_LISTEN", path: ["node_api", "http", "listen"], kind: "string" },
];

/** Booleans accept true/false/1/0. */
export function parseEnvBool(s: string): boolean | undefined {
  if (s === "true" || s === "1") return true;
  if (s === "false" || s === "0") return false;
  return undefined;
}

export function parseEnvInt(s: string): number | undefined {
  if (!/^-?\d+$/.test(s.trim())) return undefined;
  const n = Number(s.trim());
  return Number.isSafeInteger(n) ? n : undefined;
}

export interface EnvValue {
  readonly override: EnvOverride;
  readonly value: string | boolean | number;
}

/**
 * Reads the honoured variables. An empty variable counts as unset (systemd EnvironmentFile
 * and container runtimes commonly produce `VAR=`); an unparsable one is an issue naming it.
 */
export function readEnvOverrides(env: NodeJS.ProcessEnv): { values: EnvValue[]; issues: ConfigIssue[] } {
  const values: EnvValue[] = [];
  const issues: ConfigIssue[] = [];
  for (const o of envOverrides) {
    const raw = env[o.variable];
    if (raw === undefined || raw === "") continue;
    if (o.kind === "string") {
      values.push({ override: o, value: raw });
    } else if (o.kind === "bool") {
      const b = parseEnvBool(raw);
      if (b === undefined) issues.push({ path: o.variable, message: "must be true, false, 1 or 0", received: raw });
      else values.push({ override: o, value: b });
    } else {
      const n = parseEnvInt(raw);
      if (n === undefined) issues.push({ path: o.variable, message: "must be an integer", received: raw });
      else values.push({ override: o, value: n });
    }
  }
  return { values, issues };
}
