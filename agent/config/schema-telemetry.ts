// Telemetry sections: observe, logs, audit (docs/config-reference.md).
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
    enabled: bool().prefault(true).meta({ description: "Collect metrics and send them to the control plane." }),
    interval: dur("15s").meta({ description: "Collection cadence.", allowed: "≥ 5s (when enabled)" }),
    batch_interval: dur("10s").meta({ description: "How often collected points are sent.", allowed: "≥ 1s (when enabled)" }),
    batch_max_size: int().prefault(500).meta({ description: "Most data points per batch.", allowed: "≥ 1 (when enabled)" }),
    buffer_size: int().prefault(5000).meta({ description: "Ring buffer of unsent points; the oldest are dropped when full.", allowed: "≥ `batch_max_size` (when enabled)" }),
    metrics: list(oneOf(metricGroups)).prefault([...metricGroups]).meta({ description: "Metric groups collected: `node_resources` (CPU, memory, disk, load), `tunnel_health` (per peer handshake age, bytes, loss), `peer_latency` (RTT over the mesh), `agent_stats` (heap, event-loop delay, uptime, reconnects).", allowed: "no group twice" }),
  }),
  (r) => {
    if (!r.on(["enabled"])) return;
    r.durAtLeast(["interval"], "5s");
    batching(r);
    noDuplicates(r, "metrics", "metric group");
  },
).prefault({}).meta({ description: "Metrics sent to the control plane in gzip-compressed batches (docs/telemetry.md); the same figures are served locally in Prometheus format by `plexd metrics` and `GET /metrics` on the node API." });

// Exactly one of unit / path / severity per item; modelled as a strict object with optional
// keys so that an unknown key still reads "unknown key" rather than a union mismatch.
const logFilter = section({
  unit: str().optional().meta({ description: "Keep lines of this systemd unit.", allowed: "a unit name" }),
  path: str().optional().meta({ description: "Keep lines of files matching this path (globs allowed).", allowed: "absolute path" }),
  severity: oneOf(["debug", "info", "warn", "error"]).optional().meta({ description: "Keep lines of at least this severity." }),
});

export const logsSchema = withRules(
  section({
    enabled: bool().prefault(true).meta({ description: "Forward logs to the control plane." }),
    sources: list(str()).prefault(["journald"]).meta({ description: "Where logs are read: `journald`, or file paths. Units `plexd` and `plexd-privhelper` are always included.", allowed: "`journald` or absolute paths (globs allowed)" }),
    filters: list(logFilter).prefault([]).meta({ description: "Which lines are forwarded; each item has exactly one of `unit`, `path`, `severity`. Empty: everything." }),
    batch_interval: dur("10s").meta({ description: "How often lines are sent.", allowed: "≥ 1s (when enabled)" }),
    batch_max_size: int().prefault(1000).meta({ description: "Most lines per batch.", allowed: "≥ 1 (when enabled)" }),
    buffer_size: int().prefault(10000).meta({ description: "Ring buffer of unsent lines; the oldest are dropped when full.", allowed: "≥ `batch_max_size` (when enabled)" }),
    max_line_size: int().prefault(16384).meta({ description: "Longer lines are cut and end in `[truncated]`.", allowed: "≥ 256 (when enabled)" }),
    tail_files: list(str()).prefault([]).meta({ description: "Root-only files that privhelper may read for the agent (TailFile); privhelper reads this key itself from the root-owned config. A file source the agent cannot read is forwarded only when listed here.", allowed: "absolute paths (globs allowed)" }),
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
    const tail = r.get(["tail_files"]);
    if (Array.isArray(tail)) {
      tail.forEach((s, i) => {
        if (typeof s === "string" && !isAbsolutePath(s)) r.report(["tail_files", i], "must be an absolute file path (globs allowed)", s);
      });
    }
    batching(r);
    r.intAtLeast(["max_line_size"], 256);
  },
).prefault({}).meta({ description: "Log forwarding to the control plane: journald and files, batched, gzip-compressed, at least once across restarts (docs/telemetry.md#logs)." });

export const auditSchema = withRules(
  section({
    enabled: bool().prefault(true).meta({ description: "Forward audit events to the control plane." }),
    sources: list(oneOf(["auditd", "kubernetes"])).prefault(["auditd"]).meta({ description: "Audit sources; `kubernetes` is added automatically on Kubernetes nodes.", allowed: "no source twice" }),
    kubernetes_log_path: str().prefault("/var/log/kubernetes/audit/audit.log").meta({ description: "Kubernetes API server audit log read for source `kubernetes`.", allowed: "absolute path (when enabled)" }),
    batch_interval: dur("10s").meta({ description: "How often events are sent.", allowed: "≥ 1s (when enabled)" }),
    batch_max_size: int().prefault(500).meta({ description: "Most events per batch.", allowed: "≥ 1 (when enabled)" }),
    buffer_size: int().prefault(10000).meta({ description: "Ring buffer of unsent events; the oldest are dropped when full.", allowed: "≥ `batch_max_size` (when enabled)" }),
  }),
  (r) => {
    if (!r.on(["enabled"])) return;
    noDuplicates(r, "sources", "source");
    r.absPath(["kubernetes_log_path"]);
    batching(r);
  },
).prefault({}).meta({ description: "Audit-event forwarding to the control plane. This version of the agent validates the section but does not act on it yet." });

export type MetricGroup = (typeof metricGroups)[number];
export type LogFilter = z.output<typeof logFilter>;
