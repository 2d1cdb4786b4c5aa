// Telemetry sections: observe, logs, audit (spec/node-agent.md §2.2, bridge spec §4).
import type * as z from "zod";
import { type Rules, bool, dur, int, isAbsolutePath, isRec, list, oneOf, section, str, withRules } from "./schema-common.js";

export const metricGroups = ["node_resources", "tunnel_health", "peer_latency", "agent_stats"] as const;

/** Shared batching checks: cadence ≥ 1s, batches ≥ 1, ring buffer at least one batch. */
function batching(r: Rules): void {
  r.durAtLeast(["batch_interval"], "1s");
  r.intAtLeast(["batch_max_size"], 1);
  const batch = r.int(["batch_max_size"]);
  const buf = r.int(["buffer_size"]);
  if (batch !== undefined && buf !== undefined && buf < batch) {
    r.report(["buffer_size"], `must be at least batch_max_size (${batch})`, buf);
  }
}

function noDuplicates(r: Rules, key: string, what: string): void {
  const xs = r.get([key]);
  if (!Array.isArray(xs)) return;
  xs.forEach((x, i) => {
    if (xs.indexOf(x) !== i) r.report([key, i], `${what} listed twice`, x);
  });
}

export const observeSchema = withRules(
  section({
    enabled: bool().prefault(true),
    interval: dur("15s"),
    batch_interval: dur("10s"),
    batch_max_size: int().prefault(500),
    buffer_size: int().prefault(5000),
    metrics: list(oneOf(metricGroups)).prefault([...metricGroups]),
  }),
  (r) => {
    if (!r.on(["enabled"])) return;
    r.durAtLeast(["interval"], "5s");
    batching(r);
    noDuplicates(r, "metrics", "metric group");
  },
).prefault({});

// Exactly one of unit / path / severity per item; modelled as a strict object with optional
// keys so that an unknown key still reads "unknown key" rather than a union mismatch.
const logFilter = section({
  unit: str().optional(),
  path: str().optional(),
  severity: oneOf(["debug", "info", "warn", "error"]).optional(),
});

export const logsSchema = withRules(
  section({
    enabled: bool().prefault(true),
    sources: list(str()).prefault(["journald"]),
    filters: list(logFilter).prefault([]),
    batch_interval: dur("10s"),
    batch_max_size: int().prefault(1000),
    buffer_size: int().prefault(10000),
    max_line_size: int().prefault(16384),
  }),
  (r) => {
    if (!r.on(["enabled"])) return;
    const sources = r.get(["sources"]);
    if (Array.isArray(sources)) {
      sources.forEach((s, i) => {
        if (typeof s === "string" && s !== "journald" && !isAbsolutePath(s)) {
          r.report(["sources", i], 'must be "journald" or an absolute file path (globs allowed)', s);
        }
      });
    }
    const filters = r.get(["filters"]);
    if (Array.isArray(filters)) {
      filters.forEach((f, i) => {
        if (!isRec(f)) return;
        const keys = ["unit", "path", "severity"].filter((k) => f[k] !== undefined);
        if (keys.length !== 1) r.report(["filters", i], "must have exactly one of unit, path, severity", f);
        if (typeof f.unit === "string" && !/^[A-Za-z0-9@._:\\-]+$/.test(f.unit)) {
          r.report(["filters", i, "unit"], "must be a systemd unit name", f.unit);
        }
        if (typeof f.path === "string" && !isAbsolutePath(f.path)) {
          r.report(["filters", i, "path"], "must be an absolute file path (globs allowed)", f.path);
        }
      });
    }
    batching(r);
    r.intAtLeast(["max_line_size"], 256);
  },
).prefault({});

export const auditSchema = withRules(
  section({
    enabled: bool().prefault(true),
    sources: list(oneOf(["auditd", "kubernetes"])).prefault(["auditd"]),
    kubernetes_log_path: str().prefault("/var/log/kubernetes/audit/audit.log"),
    batch_interval: dur("10s"),
    batch_max_size: int().prefault(500),
    buffer_size: int().prefault(10000),
  }),
  (r) => {
    if (!r.on(["enabled"])) return;
    noDuplicates(r, "sources", "source");
    r.absPath(["kubernetes_log_path"]);
    batching(r);
  },
).prefault({});

export type MetricGroup = (typeof metricGroups)[number];
export type LogFilter = z.output<typeof logFilter>;
