import { readFile } from "node:fs/promises";
import { formatSeconds } from "../proto/lib/duration.js";
import { isCancellation, PlexdError } from "../proto/lib/errors.js";
import { Backoff } from "./controlplane/backoff.js";
import { startEventChannel, type EventChannel } from "./controlplane/channel.js";
import { runHeartbeatLoop } from "./controlplane/heartbeat.js";
import { applyStateDocument, fetchState, IdentityRejectedError } from "./controlplane/state-pull.js";
import { hasPendingKey, rotateNodeKey } from "./identity/rotate.js";
import { moveIdentityAside, saveIdentity, type Identity } from "./identity/store.js";
import { EndpointResolver } from "./mesh/endpoints.js";
import { startNatLoop, type NatResult } from "./nat/loop.js";
import { CoalescingRunner } from "./reconcile/coalesce.js";
import { stateDrift, type Correction } from "./reconcile/drift.js";
import { KernelReconciler } from "./reconcile/kernel.js";
import { QuarantineReport } from "./reconcile/quarantine-report.js";
import { buildCapabilities } from "./registration/capabilities.js";
import { BridgeManager } from "./bridge/manager.js";
import { bridgeServiceFactories } from "./bridge/registry.js";
import { register } from "./registration/register.js";
import { resolveBootstrapToken } from "./registration/token.js";
import type { DesiredStateStore } from "./state/desired.js";
import { MetricsService } from "./telemetry/metrics.js";
import { AuditService } from "./telemetry/audit/service.js";
import { resumeAllPipelines } from "./telemetry/registry.js";
import { registrationOptions, tokenSourcesFor, watchPrivhelper, type AgentContext } from "./system.js";
import { parseIPv4Int } from "../proto/lib/net.js";

// The running agent after start-up: one object that owns the loops (docs/architecture.md#lifecycle)
// for the current identity and exposes a status snapshot (node API, plexd status).

export interface LastRun {
  at: number;
  ok: boolean;
  driftCount?: number;
  error?: string;
}

export class AgentRuntime {
  readonly ctx: AgentContext;
  readonly store: DesiredStateStore;
  identity: Identity;
  channel: EventChannel | undefined;
  kernel: KernelReconciler | undefined;
  cycles: CoalescingRunner | undefined;
  lastHeartbeat: LastRun | undefined;
  nat: NatResult | undefined;
  lastReconcile: LastRun | undefined;
  /** The metrics pipeline when `observe.enabled` (docs/telemetry.md). */
  metrics: MetricsService | undefined;
  /** The audit pipeline when `audit.enabled` (docs/telemetry.md#audit). */
  audit: AuditService | undefined;
  /** mode: bridge only (docs/bridge.md). */
  bridge: BridgeManager | undefined;
  #rotating = false;
  #loops: Promise<unknown>[] = [];
  readonly #quarantine = new QuarantineReport();
  #quarantineTimer: NodeJS.Timeout | undefined;

  /** The actions feature, when `plexd up` opened it: requests from the stream, results after reconnects. */
  actions: { handleRequest(eventId: string, payload: unknown): void; reconnected(): void; sessionRevoked?(revocation: { session_id: string; revoked_at: string }): void } | undefined;
  #runSignal: AbortSignal | undefined;

  /** Capabilities the control plane has acknowledged; a change is announced again (docs/actions.md). */
  #announced: string | undefined;

  constructor(ctx: AgentContext, store: DesiredStateStore, identity: Identity, registeredNow: boolean) {
    this.ctx = ctx;
    this.store = store;
    this.identity = identity;
    // Registration carried the capabilities already (start-up phase 7).
    if (registeredNow) this.#announced = JSON.stringify(buildCapabilities(ctx.binaryChecksum, ctx.actionCapabilities?.()));
  }

  /** PUT /v1/nodes/{id}/capabilities when they differ from what was last announced. */
  async announceCapabilities(signal: AbortSignal): Promise<void> {
    const caps = { ...buildCapabilities(this.ctx.binaryChecksum, this.ctx.actionCapabilities?.()), ...(this.bridge ? { bridge: this.bridge.capabilities() } : {}) };
    const text = JSON.stringify(caps);
    if (text === this.#announced) return;
    const res = await this.ctx.cp
      .request({ method: "PUT", path: `/v1/nodes/${encodeURIComponent(this.identity.nodeId)}/capabilities`, token: this.identity.identityToken, body: caps, signal })
      .catch((err: unknown) => ({ status: 0, body: PlexdError.from(err).message }));
    if (res.status >= 200 && res.status < 300) {
      this.#announced = text;
      this.ctx.log.info({ binary: caps.binary }, "capabilities announced");
    } else this.ctx.log.warn({ status: res.status }, "capability announcement failed; retried at the next reconcile");
  }

  /** The hook set or a checksum changed: announce now rather than at the next cycle. */
  capabilitiesChanged(): void {
    const signal = this.#runSignal;
    if (signal === undefined || signal.aborted) return;
    void this.announceCapabilities(signal);
  }

  #track(name: string, p: Promise<unknown>): void {
    this.#loops.push(
      p.catch((err: unknown) => {
        if (!isCancellation(err)) this.ctx.log.error({ loop: name, err: PlexdError.from(err).message }, "loop failed");
      }),
    );
  }

  /** Runs until `signal` aborts; re-registers or waits when the identity is rejected (docs/architecture.md#lifecycle). */
  async run(signal: AbortSignal): Promise<void> {
    const { ctx } = this;
    const { config } = ctx;
    this.#runSignal = signal;
    // DNS-name endpoints: resolved by the agent, sent as IP:port, followed on the reconcile interval.
    const endpoints = new EndpointResolver({ log: ctx.log.child({ component: "endpoints" }), onChange: (ids) => this.kernel?.recheckPeers(ids) });
    this.kernel = new KernelReconciler({
      priv: ctx.priv,
      store: this.store,
      config,
      local: () => ({ nodeId: this.identity.nodeId, meshIp: this.identity.meshIp, privateKey: this.identity.privateKey }),
      health: ctx.health,
      log: ctx.log.child({ component: "kernel" }),
      signal,
      now: () => ctx.clock.now(),
      resolve: endpoints.resolve,
      bridgeChains: () => (this.bridge ? this.bridge.kernelChains() : []),
    });
    if (config.mode === "bridge") this.#startBridge(signal);
    this.kernel.onQuarantine((id, reason) => {
      this.#quarantine.note(id, reason);
      // Soon, and once for a burst (a state pull may quarantine many at once).
      this.#quarantineTimer ??= setTimeout(() => {
        this.#quarantineTimer = undefined;
        void this.#reportQuarantine(signal);
      }, 1000);
    });
    signal.addEventListener("abort", () => clearTimeout(this.#quarantineTimer), { once: true });
    this.cycles = new CoalescingRunner((reasons, sig) => this.#cycle([...reasons].join(","), sig), signal, (err) =>
      ctx.log.warn({ err: err.message }, "reconcile cycle failed; next trigger retries"),
    );
    // The last known good mesh is applied at once, control plane or not (docs/architecture.md#lifecycle).
    this.kernel.trigger("startup");
    this.#track(
      "reconcile-timer",
      this.#every(() => ctx.config.reconcile.interval.ms, signal, () => {
        void endpoints.refresh(this.store.state.peers);
        this.reconcile("timer");
      }),
    );
    if (await hasPendingKey(config.data_dir)) this.rotateKeys("pending key found at startup");
    if (config.observe.enabled) {
      this.metrics = new MetricsService({
        config: () => ctx.config,
        priv: ctx.priv,
        cp: ctx.cp,
        nodeId: () => this.identity.nodeId,
        token: () => this.identity.identityToken,
        peers: () => this.store.state.peers,
        sseReconnects: () => this.channel?.state()?.reconnects ?? 0,
        startedAt: ctx.startedAt,
        clock: ctx.clock,
        log: ctx.log.child({ component: "metrics" }),
      });
      this.#track("metrics", this.metrics.run(signal));
    }
    if (config.audit.enabled) {
      this.audit = new AuditService({
        config: () => ctx.config,
        priv: ctx.priv,
        cp: ctx.cp,
        nodeId: () => this.identity.nodeId,
        token: () => this.identity.identityToken,
        health: ctx.health,
        writer: ctx.fence,
        clock: ctx.clock,
        log: ctx.log.child({ component: "audit" }),
      });
      this.#track("audit", this.audit.run(signal));
    }

    while (!signal.aborted) {
      const session = new AbortController();
      const onAbort = (): void => session.abort();
      signal.addEventListener("abort", onAbort, { once: true });
      const lost = await this.#session(session.signal);
      signal.removeEventListener("abort", onAbort);
      session.abort();
      if (signal.aborted || lost === undefined) break;
      await this.#recoverIdentity(lost, signal);
    }
    await this.stop();
  }

  /** One identity's loops; resolves with the HTTP status when the identity was rejected. */
  async #session(signal: AbortSignal): Promise<number | undefined> {
    const { ctx } = this;
    const { config } = ctx;
    let lostStatus: number | undefined;
    const lose = (status: number): void => {
      if (lostStatus !== undefined) return;
      lostStatus = status;
      ctx.health.set("identity_rejected", "critical", `control plane rejected this node's identity (HTTP ${status})`);
      ctx.log.error({ status }, "identity rejected by the control plane");
      sessionAbort.abort();
    };
    const sessionAbort = new AbortController();
    signal.addEventListener("abort", () => sessionAbort.abort(), { once: true });
    const s = sessionAbort.signal;

    ctx.phase.set("connecting");
    const ca = config.control_plane.ca_file === "" ? undefined : await readFile(config.control_plane.ca_file);
    this.channel = await startEventChannel({
      cp: ctx.cp,
      ca,
      identity: this.identity,
      dataDir: config.data_dir,
      writer: ctx.fence,
      mode: config.mode,
      store: this.store,
      health: ctx.health,
      clock: ctx.clock,
      log: ctx.log.child({ component: "events" }),
      signal: s,
      idleTimeoutMs: config.control_plane.sse_idle_timeout.ms,
      requestTimeoutMs: config.control_plane.request_timeout.ms,
      connectTimeoutMs: config.control_plane.connect_timeout.ms,
      pollIntervalMs: () => ctx.config.reconcile.interval.ms,
      onConnected: () => {
        ctx.phase.set("connected");
        this.reconcile("connected");
        this.actions?.reconnected();
      },
      onActionRequest: (eventId, payload) => {
        if (this.actions) this.actions.handleRequest(eventId, payload);
        else ctx.log.warn({ event_id: eventId }, "action_request ignored: actions are not running");
      },
      onSessionRevoked: (r) => this.actions?.sessionRevoked?.(r),
      poll: (sig) => this.#cycle("poll", sig),
      onRotateKeys: (reason) => this.rotateKeys(reason),
      triggerReconcile: (why) => this.reconcile(why),
      onIdentityLost: lose,
    });
    this.#track(
      "heartbeat",
      runHeartbeatLoop({
        cp: ctx.cp,
        nodeId: this.identity.nodeId,
        token: () => this.identity.identityToken,
        intervalMs: () => ctx.config.heartbeat.interval.ms,
        payload: () => ({
          status: ctx.health.healthy() ? "healthy" : "degraded",
          uptime: formatSeconds(ctx.clock.now() - ctx.startedAt),
          binary_checksum: ctx.binaryChecksum,
          mesh: { interface: config.mesh.interface, peer_count: Object.keys(this.store.state.peers).length, listen_port: config.mesh.listen_port },
          ...(this.nat ? { nat: { public_endpoint: this.nat.public_endpoint, type: this.nat.type } } : {}),
          ...(this.bridge?.heartbeat() ?? {}),
        }),
        sleep: (ms, sig) => ctx.clock.sleep(ms, sig),
        now: () => ctx.clock.now(),
        signal: s,
        log: ctx.log.child({ component: "heartbeat" }),
        onResult: (r) => {
          this.lastHeartbeat = { at: r.at, ok: r.ok, ...(r.error ? { error: r.error } : {}) };
          if (r.ok) {
            ctx.health.clear("heartbeat_failing");
            // The identity is accepted: telemetry paused by a 401 may send again.
            resumeAllPipelines();
          }
          else ctx.health.set("heartbeat_failing", "warning", `heartbeat failed: ${r.error ?? ""}`);
        },
        onReconcileHint: () => this.reconcile("heartbeat"),
        onRotateKeysHint: () => this.rotateKeys("heartbeat flag"),
        onIdentityRejected: lose,
      }),
    );

    if (config.nat_traversal.enabled) {
      this.#track(
        "nat",
        startNatLoop({
          config,
          priv: ctx.priv,
          cp: ctx.cp,
          nodeId: () => this.identity.nodeId,
          token: () => this.identity.identityToken,
          store: this.store,
          clock: ctx.clock,
          log: ctx.log.child({ component: "nat" }),
          signal: s,
          onResult: (r) => (this.nat = r),
          ...(this.kernel ? { meshReady: this.kernel.meshReady } : {}),
          onIdentityRejected: lose,
        }).done,
      );
    }

    const exit = await this.channel.done;
    if (exit.reason === "identity_lost") lose(exit.status);
    else if (exit.reason === "forbidden") ctx.phase.set("offline");
    // A 403 stops the stream only; heartbeats and the reconcile timer go on until stop.
    if (exit.reason === "forbidden") await new Promise<void>((r) => (s.aborted ? r() : s.addEventListener("abort", () => r(), { once: true })));
    await this.channel.flush();
    return lostStatus;
  }

  /** A token at hand means a fresh registration; without one, wait for a 2xx heartbeat. */
  async #recoverIdentity(status: number, signal: AbortSignal): Promise<void> {
    const { ctx } = this;
    const { config } = ctx;
    ctx.phase.set("registering");
    const token = await resolveBootstrapToken(tokenSourcesFor(ctx, signal)).catch(() => undefined);
    if (token !== undefined) {
      try {
        // A fresh key pair: re-registering with the rejected identity cannot succeed (docs/architecture.md#lifecycle).
        const reg = await register({ ...registrationOptions(ctx, signal), token: token.token });
        await ctx.fence.replacing(async () => {
          await moveIdentityAside(config.data_dir, "invalid", ctx.clock.now());
          await saveIdentity(config.data_dir, reg.identity);
        });
        this.identity = reg.identity;
        this.store.update((s) => {
          s.peers = Object.fromEntries(reg.peers.map((p) => [p.id, p]));
          return ["peers"];
        });
        ctx.health.clear("identity_rejected");
        resumeAllPipelines();
        ctx.log.info({ node_id: reg.identity.nodeId, previous_status: status }, "registered again after identity loss");
        return;
      } catch (err) {
        ctx.log.error({ err: PlexdError.from(err).message }, "re-registration failed");
      }
    }
    ctx.phase.set("unregistered");
    // Keep the cached tunnels; probe with heartbeats at the normal interval until one succeeds.
    for (;;) {
      try {
        await ctx.clock.sleep(config.heartbeat.interval.ms, signal);
      } catch {
        return;
      }
      const res = await ctx.cp
        .request({ method: "POST", path: `/v1/nodes/${encodeURIComponent(this.identity.nodeId)}/heartbeat`, token: this.identity.identityToken, body: { node_id: this.identity.nodeId, timestamp: new Date(ctx.clock.now()).toISOString(), status: "degraded", uptime: formatSeconds(ctx.clock.now() - ctx.startedAt), binary_checksum: ctx.binaryChecksum }, signal })
        .catch(() => undefined);
      if (res !== undefined && res.status >= 200 && res.status < 300) {
        ctx.health.clear("identity_rejected");
        return;
      }
    }
  }

  /** Queues a reconcile cycle (coalesced: one running, one queued). */
  reconcile(why: string): void {
    this.cycles?.trigger(why);
  }

  /**
   * One reconcile cycle (docs/architecture.md#reconciliation-and-policy): pull the desired state, note what the
   * events missed, write it into the store, converge the kernel after reading it back, and
   * report every correction. Without the control plane the kernel is still corrected from
   * the store; only the pull and the report wait for the next cycle.
   */
  async #cycle(why: string, signal: AbortSignal): Promise<void> {
    const { ctx } = this;
    const corrections: Correction[] = [];
    let pulled = false;
    try {
      const rotationsAtFetch = this.channel?.keyRotations ?? 0;
      const doc = await fetchState(ctx.cp, this.identity.nodeId, this.identity.identityToken, signal);
      const keysChanged = doc.signing_keys && this.channel ? await this.channel.adoptSigningKeys(doc.signing_keys, rotationsAtFetch) : false;
      corrections.push(...stateDrift(this.store.state, doc, keysChanged));
      this.store.update((s) => applyStateDocument(s, doc));
      pulled = true;
    } catch (err) {
      const e = PlexdError.from(err);
      if (e.code === "cancelled") throw e;
      if (err instanceof IdentityRejectedError) ctx.log.warn({ status: err.status }, "state pull: identity rejected");
      else ctx.log.warn({ why, err: e.message }, "state pull failed; correcting the kernel from the cached desired state");
    }
    let kernelOk = true;
    try {
      const r = await this.kernel!.converge(true, `cycle:${why}`);
      corrections.push(...r.corrections);
    } catch (err) {
      kernelOk = false;
      const e = PlexdError.from(err);
      if (e.code === "cancelled") throw e;
      ctx.log.warn({ err: e.message }, "reconcile: kernel converge failed");
    }
    this.lastReconcile = { at: ctx.clock.now(), ok: pulled && kernelOk, driftCount: corrections.length };
    this.bridge?.trigger(`cycle:${why}`);
    if (pulled) await this.announceCapabilities(signal);
    // Quarantine reports that could not be delivered before go out with the cycle's retries.
    if (pulled) await this.#reportQuarantine(signal);
    if (corrections.length === 0) return;
    ctx.log.warn({ why, corrections }, "drift corrected");
    this.onDrift?.(corrections);
    if (!pulled) return;
    const res = await ctx.cp
      .request({ method: "POST", path: `/v1/nodes/${encodeURIComponent(this.identity.nodeId)}/drift`, token: this.identity.identityToken, body: { timestamp: new Date(ctx.clock.now()).toISOString(), corrections }, signal })
      .catch((err: unknown) => ({ status: 0, body: PlexdError.from(err).message }));
    if (res.status < 200 || res.status >= 300) ctx.log.warn({ status: res.status }, "drift report not delivered");
  }

  /** POST /drift with the quarantine changes not yet delivered (QuarantineReport). */
  async #reportQuarantine(signal: AbortSignal): Promise<void> {
    if (this.#quarantine.size === 0 || signal.aborted) return;
    const { ctx } = this;
    const taken = this.#quarantine.take();
    const res = await ctx.cp
      .request({ method: "POST", path: `/v1/nodes/${encodeURIComponent(this.identity.nodeId)}/drift`, token: this.identity.identityToken, body: { timestamp: new Date(ctx.clock.now()).toISOString(), corrections: [...taken.values()] }, signal })
      .catch((err: unknown) => ({ status: 0, body: PlexdError.from(err).message }));
    if (res.status >= 200 && res.status < 300) return;
    this.#quarantine.undelivered(taken);
    ctx.log.warn({ status: res.status }, "quarantine report not delivered; retried with the next reconcile");
  }

  /** Called with every non-empty set of corrections (node API Watch). */
  onDrift: ((corrections: Correction[]) => void) | undefined;

  /** One rotation at a time; a trigger during one is ignored. */
  rotateKeys(reason: string): void {
    if (this.#rotating) {
      this.ctx.log.info({ reason }, "key rotation already running; trigger ignored");
      return;
    }
    this.#rotating = true;
    const { ctx } = this;
    const backoff = new Backoff();
    const signal = new AbortController().signal;
    this.#track(
      "key-rotation",
      rotateNodeKey({
        dataDir: ctx.config.data_dir,
        writer: ctx.fence,
        cp: ctx.cp,
        identity: this.identity,
        log: ctx.log.child({ component: "rotation", reason }),
        signal,
        backoffMs: () => backoff.next(),
        sleep: (ms, s) => ctx.clock.sleep(ms, s),
        applyKeyAndPeers: async (privateKey, peers) => {
          this.identity.privateKey = privateKey;
          this.store.update((s) => {
            s.peers = Object.fromEntries(peers.map((p) => [p.id, p]));
            return ["peers"];
          });
          await this.kernel?.converge(false, "key_rotation");
        },
      }).finally(() => {
        this.#rotating = false;
        this.reconcile("key_rotation");
      }),
    );
  }

  /** Runs `fn` every `ms()`; a reload that changes the interval restarts the wait with the new one. */
  async #every(ms: () => number, signal: AbortSignal, fn: () => void): Promise<void> {
    while (!signal.aborted) {
      const interval = ms();
      const changed = new AbortController();
      const unsubscribe = this.ctx.live.subscribe(() => {
        if (ms() !== interval) changed.abort();
      });
      try {
        await this.ctx.clock.sleep(interval, AbortSignal.any([signal, changed.signal]));
        fn();
      } catch {
        if (signal.aborted) return;
      } finally {
        unsubscribe();
      }
    }
  }

  /** The bridge services (docs/bridge.md), after the mesh: kernel calls go mesh → routes → firewall. */
  #startBridge(signal: AbortSignal): void {
    const { ctx } = this;
    const log = ctx.log.child({ component: "bridge" });
    const bridge = new BridgeManager({ priv: ctx.priv, config: () => ctx.config, store: this.store, health: ctx.health, log, signal, onFirewallChange: () => this.kernel?.runner.trigger("bridge") });
    const peerPrefixes = (): string[] => Object.values(this.store.state.peers).flatMap((p) => p.allowed_ips);
    const policyView = () => ({
      policies: this.store.state.policies,
      local: { id: this.identity.nodeId, meshIp: this.identity.meshIp },
      ipOf: (id: string) => parseIPv4Int(this.store.state.peers[id]?.mesh_ip ?? ""),
    });
    for (const make of bridgeServiceFactories) bridge.register(make({ log, dataDir: ctx.config.data_dir, peerPrefixes, policyView }));
    this.bridge = bridge;
    void this.kernel?.meshReady.then(() => bridge.trigger("startup"));
    const unsubscribe = ctx.live.subscribe(() => bridge.trigger("config_reload"));
    signal.addEventListener("abort", unsubscribe, { once: true });
  }

  async stop(): Promise<void> {
    const { ctx } = this;
    ctx.phase.set("stopping");
    await this.bridge?.stopServices();
    await Promise.race([Promise.all(this.#loops), new Promise((r) => setTimeout(r, ctx.config.node_api.shutdown_timeout.ms).unref())]);
    await this.channel?.flush();
    await this.store.flush();
  }

  status() {
    const s = this.channel?.state();
    return {
      phase: this.ctx.phase.current,
      nodeId: this.identity.nodeId,
      meshIp: this.identity.meshIp,
      uptime: formatSeconds(this.ctx.clock.now() - this.ctx.startedAt),
      sse: s,
      lastHeartbeat: this.lastHeartbeat,
      lastReconcile: this.lastReconcile,
      peerCount: Object.keys(this.store.state.peers).length,
      health: this.ctx.health.list(),
      rejected: this.channel?.verifier.rejected,
      bridge: this.bridge?.status(),
    };
  }
}

export { watchPrivhelper };
