// The audit pipeline (docs/telemetry.md#audit): kernel records through privhelper WatchAudit
// and the Kubernetes API server's audit log, normalised into one event shape and sent to the
// control plane by the shared delivery engine; plus what `plexd audit` shows.
import { hostname as osHostname } from "node:os";
import type { Config } from "../../config/schema.js";
import type { CpClient } from "../../controlplane/http.js";
import type { HealthRegistry } from "../../health/registry.js";
import type { PrivClient } from "../../privclient/client.js";
import type { DataWriter } from "../../util/atomic.js";
import type { Clock } from "../../util/clock.js";
import type { Logger } from "../../util/log.js";
import { cpSender, pipelineFormat } from "../cp-send.js";
import { createPipeline, type Pipeline, type PipelineCounters } from "../delivery.js";
import { registerPipeline } from "../registry.js";
import type { AuditEvent } from "./event.js";
import { KernelAuditSource, unavailableCode, type SourceView } from "./kernel.js";
import { K8sAuditSource } from "./kubernetes.js";

export interface AuditDeps {
  config: () => Config;
  priv: PrivClient;
  cp: CpClient;
  nodeId: () => string;
  token: () => string;
  health: HealthRegistry;
  writer: DataWriter;
  clock: Clock;
  log: Logger;
  hostname?: string;
  /** Replaces the control-plane sender (tests). */
  send?: Parameters<typeof createPipeline<AuditEvent>>[0]["send"];
  /** Kubernetes nodes add the `kubernetes` source on their own; default: the in-cluster environment. */
  onKubernetes?: boolean;
}

export interface AuditStatus {
  enabled: boolean;
  sources: SourceView[];
  buffer_size: number;
  counters: PipelineCounters | undefined;
}

const recentKeep = 200;

/** `kubernetes` joins the configured sources on a Kubernetes node (the DaemonSet's environment). */
export function activeSources(cfg: Config["audit"], onKubernetes: boolean): ("auditd" | "kubernetes")[] {
  const s = new Set(cfg.sources);
  if (onKubernetes) s.add("kubernetes");
  return [...s];
}

export class AuditService {
  readonly pipeline: Pipeline<AuditEvent>;
  readonly #d: AuditDeps;
  readonly #kernel: KernelAuditSource | undefined;
  readonly #k8s: K8sAuditSource | undefined;
  readonly #recent: { seq: number; event: AuditEvent }[] = [];
  readonly #unregister: () => void;

  constructor(deps: AuditDeps) {
    this.#d = deps;
    const cfg = deps.config();
    const a = cfg.audit;
    const host = deps.hostname ?? osHostname();
    this.pipeline = createPipeline<AuditEvent>({
      name: "audit",
      batchIntervalMs: a.batch_interval.ms,
      batchMaxSize: a.batch_max_size,
      bufferSize: a.buffer_size,
      format: pipelineFormat.audit,
      encode: (e) => JSON.stringify(e),
      send: deps.send ?? cpSender(deps.cp, "audit", deps.nodeId, deps.token),
      closeTimeoutMs: cfg.node_api.shutdown_timeout.ms,
      log: deps.log,
    });
    this.#unregister = registerPipeline("audit", this.pipeline);
    const sources = activeSources(a, deps.onKubernetes ?? process.env.KUBERNETES_SERVICE_HOST !== undefined);
    const push = (event: AuditEvent): number => {
      const seq = this.pipeline.push(event);
      this.#recent.push({ seq, event });
      if (this.#recent.length > recentKeep * 2) this.#recent.splice(0, this.#recent.length - recentKeep);
      return seq;
    };
    if (sources.includes("auditd")) this.#kernel = new KernelAuditSource({ priv: deps.priv, health: deps.health, clock: deps.clock, log: deps.log.child({ source: "auditd" }), hostname: host, push });
    if (sources.includes("kubernetes")) {
      this.#k8s = new K8sAuditSource({
        path: a.kubernetes_log_path,
        dataDir: cfg.data_dir,
        writer: deps.writer,
        priv: deps.priv,
        log: deps.log.child({ source: "kubernetes" }),
        hostname: host,
        bufferSize: () => deps.config().audit.buffer_size,
        push,
        onCommitted: (cb) => this.pipeline.onCommitted(cb),
      });
    }
  }

  /** Runs the sources until `signal` aborts, then makes the final flush and persists the read position. */
  async run(signal: AbortSignal): Promise<void> {
    const loops: Promise<void>[] = [];
    if (this.#kernel) loops.push(this.#kernel.run(signal));
    if (this.#k8s) loops.push(this.#k8s.run(signal));
    await Promise.all(loops);
    await this.pipeline.close();
    await this.#k8s?.persist();
    this.#unregister();
    this.#d.health.clear(unavailableCode);
  }

  status(): AuditStatus {
    return {
      enabled: true,
      sources: [this.#kernel?.view, this.#k8s?.view].filter((v): v is SourceView => v !== undefined),
      buffer_size: this.#d.config().audit.buffer_size,
      counters: this.pipeline.counters(),
    };
  }

  /** The last `limit` events pushed, oldest first (also those already sent). */
  recent(limit: number): AuditEvent[] {
    return this.#recent.slice(-limit).map((r) => r.event);
  }
}
