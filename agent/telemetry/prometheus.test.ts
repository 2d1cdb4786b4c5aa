import { describe, expect, it } from "vitest";
import { renderPrometheus } from "./prometheus.js";
import type { PipelineCounters } from "./delivery.js";

const counters = (o: Partial<PipelineCounters>): PipelineCounters => ({
  buffered: 0,
  sent_total: 0,
  dropped_overflow_total: 0,
  dropped_rejected_total: 0,
  dropped_oversize_total: 0,
  send_errors_total: 0,
  sent_batches_total: 0,
  last_flush_at: null,
  last_flush_outcome: null,
  last_success_at: null,
  last_error: null,
  paused: null,
  paused_until: null,
  committed_seq: 0,
  pushed_total: 0,
  ...o,
});

describe("Prometheus exposition", () => {
  it("renders node, per-peer, agent and pipeline figures with labels", async () => {
    const text = await renderPrometheus({
      node: { cpu_percent: 12.5, memory_used_bytes: 1, memory_total_bytes: 2, disk_used_bytes: 3, disk_total_bytes: 4, load_avg_1: 0.5, load_avg_5: 0.25, load_avg_15: 0.125, network_rx_bytes: 100, network_tx_bytes: 200 },
      tunnels: [{ peer_id: "n_b", endpoint: "192.0.2.3:51820", last_handshake_time: null, handshake_age_seconds: 12, rx_bytes: 10, tx_bytes: 20, handshake_succeeded: true, packet_loss_percent: 0 }],
      latency: new Map([
        ["n_b", { rttMs: 0.75, sent: 3, received: 3, lossPercent: 0, at: 0 }],
        ["n_c", { rttMs: -1, sent: 3, received: 0, lossPercent: 100, at: 0 }],
      ]),
      agent: { uptime_seconds: 60, rss_bytes: 5e7, sse_reconnects_total: 2 },
      pipelines: [{ name: "metrics", counters: counters({ buffered: 4, sent_total: 96, dropped_overflow_total: 7, last_success_at: "2026-01-01T00:00:00.000Z" }) }],
    });
    expect(text).toContain("# TYPE plexd_node_cpu_percent gauge\nplexd_node_cpu_percent 12.5");
    expect(text).toContain('plexd_node_load_average{window="5m"} 0.25');
    expect(text).toContain("# TYPE plexd_node_network_receive_bytes_total counter\nplexd_node_network_receive_bytes_total 100");
    expect(text).toContain('plexd_peer_handshake_age_seconds{peer_id="n_b"} 12');
    expect(text).toContain('plexd_peer_rtt_milliseconds{peer_id="n_b"} 0.75');
    // no answer: no RTT sample, 100 % loss
    expect(text).not.toContain('plexd_peer_rtt_milliseconds{peer_id="n_c"}');
    expect(text).toContain('plexd_peer_loss_percent{peer_id="n_c"} 100');
    expect(text).toContain("plexd_agent_sse_reconnects_total 2");
    expect(text).toContain('plexd_telemetry_buffered{pipeline="metrics"} 4');
    expect(text).toContain('plexd_telemetry_dropped_total{pipeline="metrics",reason="overflow"} 7');
    expect(text).toContain('plexd_telemetry_last_success_timestamp_seconds{pipeline="metrics"} 1767225600');
  });

  it("answers the pipeline counters alone when metrics collection is off", async () => {
    const text = await renderPrometheus({ pipelines: [{ name: "logs", counters: counters({ sent_total: 3 }) }] });
    expect(text).toContain('plexd_telemetry_sent_total{pipeline="logs"} 3');
    expect(text).not.toContain("plexd_node_");
  });
});
