import { Counter, Gauge, Registry } from "prom-client";
import type { LatencySample, TunnelHealth } from "./metrics-peers.js";
import type { NodeResources } from "./metrics-node.js";
import type { PipelineCounters, PipelineName } from "./delivery.js";

// The metrics pipeline's figures in Prometheus text exposition (docs/telemetry.md#prometheus),
// for `plexd metrics` and GET /metrics on the node API. prom-client renders the format
// (escaping, HELP/TYPE lines, label order) so we do not hand-write it. A fresh registry per
// scrape: the values are the last collection cycle's, set once, nothing accumulates here.

export interface PromSnapshot {
  node?: NodeResources | undefined;
  tunnels?: TunnelHealth[] | undefined;
  latency?: ReadonlyMap<string, LatencySample> | undefined;
  agent?: Record<string, unknown> | undefined;
  pipelines: { name: PipelineName; counters: PipelineCounters }[];
}

export const prometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

export async function renderPrometheus(s: PromSnapshot): Promise<string> {
  const registry = new Registry();
  const gauge = (name: string, help: string, labelNames: string[] = []): Gauge => new Gauge({ name, help, labelNames, registers: [registry] });
  const counter = (name: string, help: string, labelNames: string[] = []): Counter => new Counter({ name, help, labelNames, registers: [registry] });

  if (s.node !== undefined) {
    const n = s.node;
    gauge("plexd_node_cpu_percent", "Host CPU busy share over the last collection interval, 0-100.").set(n.cpu_percent);
    gauge("plexd_node_memory_used_bytes", "MemTotal minus MemAvailable.").set(n.memory_used_bytes);
    gauge("plexd_node_memory_total_bytes", "MemTotal.").set(n.memory_total_bytes);
    gauge("plexd_node_disk_used_bytes", "Used bytes of the filesystem holding data_dir.").set(n.disk_used_bytes);
    gauge("plexd_node_disk_total_bytes", "Size of the filesystem holding data_dir.").set(n.disk_total_bytes);
    const load = gauge("plexd_node_load_average", "System load average.", ["window"]);
    load.set({ window: "1m" }, n.load_avg_1);
    load.set({ window: "5m" }, n.load_avg_5);
    load.set({ window: "15m" }, n.load_avg_15);
    counter("plexd_node_network_receive_bytes_total", "Bytes received on all non-loopback interfaces.").inc(n.network_rx_bytes);
    counter("plexd_node_network_transmit_bytes_total", "Bytes sent on all non-loopback interfaces.").inc(n.network_tx_bytes);
  }
  if (s.tunnels !== undefined) {
    const rx = counter("plexd_peer_receive_bytes_total", "Bytes received from the peer through its tunnel.", ["peer_id"]);
    const tx = counter("plexd_peer_transmit_bytes_total", "Bytes sent to the peer through its tunnel.", ["peer_id"]);
    const age = gauge("plexd_peer_handshake_age_seconds", "Seconds since the last WireGuard handshake (absent when none).", ["peer_id"]);
    const up = gauge("plexd_peer_handshake_ok", "1 when the last handshake is at most 180 s old.", ["peer_id"]);
    for (const t of s.tunnels) {
      const l = { peer_id: t.peer_id };
      rx.inc(l, t.rx_bytes);
      tx.inc(l, t.tx_bytes);
      if (t.handshake_age_seconds !== null) age.set(l, t.handshake_age_seconds);
      up.set(l, t.handshake_succeeded ? 1 : 0);
    }
  }
  if (s.latency !== undefined && s.latency.size > 0) {
    const rtt = gauge("plexd_peer_rtt_milliseconds", "Mean ICMP round-trip time over the mesh in the latest probe (absent when no probe was answered).", ["peer_id"]);
    const loss = gauge("plexd_peer_loss_percent", "Share of the latest probe's echo requests left unanswered, 0-100.", ["peer_id"]);
    for (const [id, l] of s.latency) {
      if (l.received > 0) rtt.set({ peer_id: id }, l.rttMs);
      loss.set({ peer_id: id }, l.lossPercent);
    }
  }
  if (s.agent !== undefined) {
    const a = s.agent;
    const num = (k: string): number => (typeof a[k] === "number" ? a[k] : 0);
    gauge("plexd_agent_uptime_seconds", "Seconds since the agent started.").set(num("uptime_seconds"));
    gauge("plexd_agent_rss_bytes", "Resident set size of the agent.").set(num("rss_bytes"));
    gauge("plexd_agent_heap_used_bytes", "V8 heap in use.").set(num("heap_used_bytes"));
    gauge("plexd_agent_heap_total_bytes", "V8 heap reserved.").set(num("heap_total_bytes"));
    gauge("plexd_agent_event_loop_delay_p99_milliseconds", "99th percentile event-loop delay over the last collection interval.").set(num("event_loop_delay_p99_ms"));
    counter("plexd_agent_sse_reconnects_total", "Reconnects of the control-plane event stream.").inc(num("sse_reconnects_total"));
    counter("plexd_agent_privhelper_errors_total", "Failed privhelper calls of the metrics collectors.").inc(num("privhelper_errors_total"));
  }
  const labels = ["pipeline"];
  const buffered = gauge("plexd_telemetry_buffered", "Entries in the pipeline's ring buffer (unsent and in flight).", labels);
  const sent = counter("plexd_telemetry_sent_total", "Entries the control plane accepted.", labels);
  const batches = counter("plexd_telemetry_sent_batches_total", "Batches the control plane accepted.", labels);
  const dropped = counter("plexd_telemetry_dropped_total", "Entries lost: ring overflow, a lone entry refused as too large (oversize), a batch refused for good (rejected).", ["pipeline", "reason"]);
  const errors = counter("plexd_telemetry_send_errors_total", "Failed delivery attempts (network, 401, 429, 5xx).", labels);
  const lastOk = gauge("plexd_telemetry_last_success_timestamp_seconds", "Unix time of the last accepted batch.", labels);
  for (const { name, counters: c } of s.pipelines) {
    const l = { pipeline: name };
    buffered.set(l, c.buffered);
    sent.inc(l, c.sent_total);
    batches.inc(l, c.sent_batches_total);
    dropped.inc({ ...l, reason: "overflow" }, c.dropped_overflow_total);
    dropped.inc({ ...l, reason: "oversize" }, c.dropped_oversize_total);
    dropped.inc({ ...l, reason: "rejected" }, c.dropped_rejected_total);
    errors.inc(l, c.send_errors_total);
    if (c.last_success_at !== null) lastOk.set(l, Date.parse(c.last_success_at) / 1000);
  }
  return registry.metrics();
}
