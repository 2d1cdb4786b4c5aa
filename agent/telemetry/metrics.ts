import { monitorEventLoopDelay } from "node:perf_hooks";
import { PlexdError, isCancellation } from "../../proto/lib/errors.js";
import type { Config } from "../config/schema.js";
import type { MetricGroup } from "../config/schema-telemetry.js";
import type { CpClient } from "../controlplane/http.js";
import type { Peer } from "../mesh/peer.js";
import type { PrivClient } from "../privclient/client.js";
import type { Clock } from "../util/clock.js";
import type { Logger } from "../util/log.js";
import { cpSender, pipelineFormat } from "./cp-send.js";
import { createPipeline, type Pipeline } from "./delivery.js";
import { probePeers } from "./metrics-latency.js";
import { NodeResourcesCollector } from "./metrics-node.js";
import { latencyPoint, tunnelHealth, type LatencySample, type TunnelHealth } from "./metrics-peers.js";
import type { NodeResources } from "./metrics-node.js";
import { pipelineCounters, registerPipeline, setLatencySource } from "./registry.js";

// The metrics pipeline (docs/telemetry.md#metrics): every `observe.interval` one collection
// cycle pushes node_resources, tunnel_health (per peer), agent_stats, and starts a latency
// round whose peer_latency points follow when it ends. A failing collector is logged and
// skipped for that cycle; collection never waits for delivery.

export interface MetricPoint {
  timestamp: string;
  group: MetricGroup;
  peer_id?: string;
  data: Record<string, unknown>;
}

export interface MetricsDeps {
  config: () => Config;
  priv: PrivClient;
  cp: CpClient;
  nodeId: () => string;
  token: () => string;
  peers: () => Record<string, Peer>;
  sseReconnects: () => number;
  startedAt: number;
  clock: Clock;
  log: Logger;
  /** Replaces the control-plane sender (bench, tests). */
  send?: Parameters<typeof createPipeline<MetricPoint>>[0]["send"];
}

export class MetricsService {
  readonly pipeline: Pipeline<MetricPoint>;
  /** Latest latency sample per peer id; shown by ListPeers, `plexd peers` and `plexd top`. */
  readonly latency = new Map<string, LatencySample>();
  privhelperErrors = 0;
  cycles = 0;
  /** The last cycle's values per group, for the Prometheus exposition (GET /metrics). */
  readonly latest: { node?: NodeResources; tunnels?: TunnelHealth[]; agent?: Record<string, unknown> } = {};
  readonly #deps: MetricsDeps;
  readonly #node: NodeResourcesCollector;
  readonly #loopDelay = monitorEventLoopDelay({ resolution: 10 });
  #probing: Promise<void> | undefined;
  readonly #unregister: (() => void)[] = [];

  constructor(deps: MetricsDeps) {
    this.#deps = deps;
    const cfg = deps.config();
    const o = cfg.observe;
    this.#node = new NodeResourcesCollector(cfg.data_dir);
    this.pipeline = createPipeline<MetricPoint>({
      name: "metrics",
      batchIntervalMs: () => deps.config().observe.batch_interval.ms,
      batchMaxSize: () => deps.config().observe.batch_max_size,
      bufferSize: o.buffer_size,
      format: pipelineFormat.metrics,
      encode: (p) => JSON.stringify(p),
      send: deps.send ?? cpSender(deps.cp, "metrics", deps.nodeId, deps.token),
      closeTimeoutMs: cfg.node_api.shutdown_timeout.ms,
      log: deps.log,
    });
    this.#unregister.push(registerPipeline("metrics", this.pipeline), setLatencySource(this.latency));
  }

  #groups(): Set<MetricGroup> {
    return new Set(this.#deps.config().observe.metrics);
  }

  /** Runs collection cycles until `signal` aborts, then makes the final flush. */
  async run(signal: AbortSignal): Promise<void> {
    const { clock, log } = this.#deps;
    this.#loopDelay.enable();
    await this.#node.start().catch((err: unknown) => log.warn({ err: PlexdError.from(err).message }, "metrics: CPU baseline not read"));
    try {
      while (!signal.aborted) {
        await clock.sleep(this.#deps.config().observe.interval.ms, signal);
        await this.collect(signal);
      }
    } catch (err) {
      if (!isCancellation(err) && !signal.aborted) throw err;
    } finally {
      this.#loopDelay.disable();
      await this.close();
    }
  }

  /** One collection cycle; returns the points pushed now (peer_latency follows later). */
  async collect(signal: AbortSignal): Promise<MetricPoint[]> {
    const { clock, log } = this.#deps;
    const groups = this.#groups();
    const now = clock.now();
    const ts = new Date(now).toISOString();
    const points: MetricPoint[] = [];
    this.cycles++;
    const step = async (group: MetricGroup, fn: () => Promise<void>): Promise<void> => {
      if (!groups.has(group)) return;
      try {
        await fn();
      } catch (err) {
        if (isCancellation(err) && signal.aborted) throw err;
        log.warn({ group, err: PlexdError.from(err).message }, "metrics collector failed; skipped this cycle");
      }
    };
    await step("node_resources", async () => {
      this.latest.node = await this.#node.collect();
      points.push({ timestamp: ts, group: "node_resources", data: { ...this.latest.node } });
    });
    await step("tunnel_health", async () => {
      const cfg = this.#deps.config();
      const mesh = await this.#deps.priv.readMesh({ interface: cfg.mesh.interface }, { signal, timeoutMs: 10_000 }).catch((err: unknown) => {
        this.privhelperErrors++;
        throw err;
      });
      const latency = groups.has("peer_latency") ? this.latency : undefined;
      this.latest.tunnels = tunnelHealth(this.#deps.peers(), mesh, latency, now);
      for (const t of this.latest.tunnels) points.push({ timestamp: ts, group: "tunnel_health", peer_id: t.peer_id, data: { ...t } });
    });
    await step("agent_stats", () => {
      this.latest.agent = this.#agentStats(now);
      points.push({ timestamp: ts, group: "agent_stats", data: this.latest.agent });
      return Promise.resolve();
    });
    for (const p of points) this.pipeline.push(p);
    if (groups.has("peer_latency") && this.#probing === undefined) {
      this.#probing = this.#probe(signal).finally(() => (this.#probing = undefined));
    }
    return points;
  }

  /** One latency round; its points go out when it ends, stamped with its start. */
  async #probe(signal: AbortSignal): Promise<void> {
    const { clock, log } = this.#deps;
    const ts = new Date(clock.now()).toISOString();
    try {
      const round = await probePeers(this.#deps.priv, Object.values(this.#deps.peers()), () => clock.now(), signal);
      for (const [id, s] of round.samples) {
        this.latency.set(id, s);
        this.pipeline.push({ timestamp: ts, group: "peer_latency", peer_id: id, data: { ...latencyPoint(id, s) } });
      }
      // Peers that left the mesh leave the latency table too.
      const present = this.#deps.peers();
      for (const id of this.latency.keys()) if (present[id] === undefined) this.latency.delete(id);
    } catch (err) {
      if (signal.aborted) return;
      this.privhelperErrors++;
      log.warn({ err: PlexdError.from(err).message }, "peer latency probe failed; skipped this cycle");
    }
  }

  #agentStats(now: number): Record<string, unknown> {
    const mem = process.memoryUsage();
    const p99 = this.#loopDelay.count > 0 ? this.#loopDelay.percentile(99) / 1e6 : 0;
    this.#loopDelay.reset();
    const data: Record<string, unknown> = {
      uptime_seconds: Math.floor((now - this.#deps.startedAt) / 1000),
      rss_bytes: mem.rss,
      heap_used_bytes: mem.heapUsed,
      heap_total_bytes: mem.heapTotal,
      event_loop_delay_p99_ms: Math.round(p99 * 1000) / 1000,
      sse_reconnects_total: this.#deps.sseReconnects(),
      privhelper_errors_total: this.privhelperErrors,
    };
    for (const name of ["metrics", "logs", "audit"] as const) {
      const c = pipelineCounters(name);
      data[`${name}_buffered`] = c?.buffered ?? 0;
      data[`${name}_dropped_overflow_total`] = c?.dropped_overflow_total ?? 0;
      data[`${name}_dropped_oversize_total`] = c?.dropped_oversize_total ?? 0;
    }
    return data;
  }

  #closed = false;

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.pipeline.close();
    for (const u of this.#unregister) u();
  }
}
