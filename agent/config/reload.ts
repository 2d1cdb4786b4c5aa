import { isDuration, isRec } from "./schema-common.js";
import type { Config } from "./schema.js";

// What a reload (SIGHUP, AgentService.ReloadConfig) may change in a running agent
// (docs/config-reference.md). Only keys whose readers look at the running configuration each
// time they act are live; a changed key anywhere else keeps its running value and is listed
// under restart_required, so the answer never claims an effect that did not happen.

/** Key paths (or whole sections) that apply without a restart. */
export const liveKeys: readonly string[] = [
  "log_level",
  "reconcile.interval",
  "heartbeat.interval",
  // Telemetry, actions and hooks read the running configuration when they act.
  "observe",
  "logs",
  "audit",
  "actions.enabled",
  "actions.max_concurrent",
  "actions.default_timeout",
  "actions.max_action_timeout",
  "actions.max_output_bytes",
  "actions.drain_timeout",
  "actions.local_auth",
  "hooks",
];

export interface ReloadPlan {
  /** The configuration to run with: the new file's live keys over the running values. */
  readonly config: Config;
  /** Changed key paths that took effect. */
  readonly applied: string[];
  /** Changed key paths that keep their running value until a restart. */
  readonly restartRequired: string[];
}

/**
 * Keys inside a live section that still need a restart: privhelper reads hooks.dir and
 * logs.tail_files (its allow-lists) at start; the metrics and audit pipelines are started, and
 * their rings allocated, once (the audit sources and their cadence with them).
 */
export const restartOnlyKeys: readonly string[] = [
  "hooks.dir",
  "logs.tail_files",
  "observe.enabled",
  "observe.buffer_size",
  "audit.enabled",
  "audit.sources",
  "audit.kubernetes_log_path",
  "audit.batch_interval",
  "audit.batch_max_size",
  "audit.buffer_size",
];

/** True when a change of the key at `path` (dotted) applies on reload. */
export const isLive = (path: string): boolean => !restartOnlyKeys.includes(path) && liveKeys.some((k) => path === k || path.startsWith(`${k}.`));

// Durations and sizes are objects in the parsed config but single values in the file.
const isLeaf = (v: unknown): boolean => !isRec(v) || isDuration(v) || ("bytes" in v && "text" in v);

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Pure: compares the running and the freshly loaded configuration leaf by leaf. */
export function planReload(running: Config, next: Config): ReloadPlan {
  const applied: string[] = [];
  const restartRequired: string[] = [];
  const merge = (a: unknown, b: unknown, path: string): unknown => {
    if (isLeaf(a) || isLeaf(b) || path === "registration.metadata") {
      if (same(a, b)) return a;
      if (isLive(path)) {
        applied.push(path);
        return b;
      }
      restartRequired.push(path);
      return a;
    }
    const ra = a as Record<string, unknown>;
    const rb = b as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const k of new Set([...Object.keys(ra), ...Object.keys(rb)])) out[k] = merge(ra[k], rb[k], path === "" ? k : `${path}.${k}`);
    return out;
  };
  const config = merge(running, next, "") as Config;
  return { config: deepFreeze(config), applied: applied.sort(), restartRequired: restartRequired.sort() };
}

function deepFreeze<T>(v: T): T {
  if (typeof v === "object" && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}
