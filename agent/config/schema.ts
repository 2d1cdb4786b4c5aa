// The whole plexd configuration schema (docs/config-reference.md). Sections live in
// schema-*.ts; this file assembles them, adds the checks that span sections, and fills the
// defaults that depend on other sections. Parsing `{ api }` yields a fully defaulted object.
//
// Conventions: see schema-common.ts (durations are `{ text, ms }`, sizes `{ text, bytes }`,
// keys stay snake_case, range checks run only for enabled sections).
import type * as z from "zod";
import { isLoopbackHost } from "../../proto/lib/net.js";
import { ConfigError, issuesFromZod } from "./config-error.js";
import { accessSchema, actionsSchema, nodeApiSchema } from "./schema-access.js";
import { bridgeRules, bridgeSchema } from "./schema-bridge.js";
import { type Rules, isAbsolutePath, oneOf, section, str, withRules } from "./schema-common.js";
import {
  controlPlaneSchema,
  heartbeatSchema,
  integritySchema,
  meshSchema,
  natTraversalSchema,
  policySchema,
  privhelperSchema,
  reconcileSchema,
  registrationSchema,
  tokenSchema,
} from "./schema-core.js";
import { completeHookDefinition, hooksSchema } from "./schema-hooks.js";
import { auditSchema, logsSchema, observeSchema } from "./schema-telemetry.js";

export const logLevels = ["debug", "info", "warn", "error"] as const;
export const modes = ["node", "bridge"] as const;

const configObject = section({
  api: str().meta({ description: "Base URL of the control plane. Can also be given by `plexd join`/`plexd up --api`.", allowed: "absolute `https://` URL without credentials, query or fragment; `http://` only for loopback hosts (127.0.0.0/8, ::1, localhost)" }),
  log_level: oneOf(logLevels).prefault("info").meta({ description: "Minimum level of the agent's log lines (JSON on stderr, kept by journald)." }),
  mode: oneOf(modes).prefault("node").meta({ description: "`node`: an ordinary mesh member. `bridge`: also serves the `bridge` section (relay, user access, ingress, site-to-site)." }),
  data_dir: str().prefault("/var/lib/plexd").meta({ description: "Directory of the node's identity, keys and state cache. Must exist, owned by user `plexd`, mode 0700.", allowed: "absolute path" }),
  control_plane: controlPlaneSchema,
  token: tokenSchema,
  registration: registrationSchema,
  mesh: meshSchema,
  reconcile: reconcileSchema,
  heartbeat: heartbeatSchema,
  integrity: integritySchema,
  policy: policySchema,
  nat_traversal: natTraversalSchema,
  observe: observeSchema,
  logs: logsSchema,
  audit: auditSchema,
  access: accessSchema,
  actions: actionsSchema,
  hooks: hooksSchema,
  node_api: nodeApiSchema,
  bridge: bridgeSchema,
  privhelper: privhelperSchema,
});

function checkApi(r: Rules): void {
  const api = r.str(["api"]);
  if (api === undefined) return;
  let u: URL;
  try {
    u = new URL(api);
  } catch {
    r.report(["api"], "must be an absolute https:// URL", api);
    return;
  }
  if (u.protocol === "http:") {
    if (!isLoopbackHost(u.hostname)) {
      r.report(["api"], "must use https:// (http:// is allowed only for loopback hosts: 127.0.0.0/8, ::1, localhost)", api);
      return;
    }
  } else if (u.protocol !== "https:") {
    r.report(["api"], "must be an absolute https:// URL", api);
    return;
  }
  if (u.username !== "" || u.password !== "") r.report(["api"], "must not contain credentials", api);
  else if (u.search !== "" || u.hash !== "") r.report(["api"], "must not contain a query or fragment", api);
}

const checkedConfig = withRules(configObject, (r) => {
  checkApi(r);
  const dataDir = r.str(["data_dir"]);
  if (dataDir !== undefined && !isAbsolutePath(dataDir)) r.report(["data_dir"], "must be an absolute path", dataDir);
  if (r.str(["mode"]) === "bridge") bridgeRules(r);
  // A hook's own timeout may not exceed what any action is allowed.
  const max = r.dur(["actions", "max_action_timeout"]);
  const defs = r.get(["hooks", "definitions"]);
  if (r.on(["hooks", "enabled"]) && max !== undefined && Array.isArray(defs)) {
    defs.forEach((_, i) => {
      const t = r.dur(["hooks", "definitions", i, "timeout"]);
      if (t !== undefined && t.ms > max.ms) {
        r.report(["hooks", "definitions", i, "timeout"], `must be at most actions.max_action_timeout (${max.text})`, t.text);
      }
    });
  }
});

/** zod schema of the whole file; output is fully defaulted (deep-freeze it via parseConfig). */
export const ConfigSchema = checkedConfig.transform((c) => ({
  ...c,
  hooks: { ...c.hooks, definitions: c.hooks.definitions.map((d) => completeHookDefinition(d, c.actions.default_timeout)) },
}));

export type DeepReadonly<T> = T extends (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends readonly (infer U)[]
    ? readonly DeepReadonly<U>[]
    : T extends object
      ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
      : T;

/** The parsed, defaulted, frozen configuration. */
export type Config = DeepReadonly<z.output<typeof ConfigSchema>>;
export type ConfigInput = z.input<typeof ConfigSchema>;

export function deepFreeze<T>(v: T): T {
  if (typeof v === "object" && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

/**
 * Validates an already-decoded document (YAML/JSON value, overrides applied) and returns the
 * frozen config. Throws ConfigError listing every issue.
 */
export function parseConfig(raw: unknown): Config {
  const r = ConfigSchema.safeParse(raw, { reportInput: true });
  if (!r.success) throw new ConfigError(issuesFromZod(r.error.issues));
  return deepFreeze(r.data) as Config;
}
