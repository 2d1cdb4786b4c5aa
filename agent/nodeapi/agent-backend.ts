import { PlexdError } from "../../proto/lib/errors.js";
import type { AgentRuntime } from "../runtime.js";
import type { DesiredStateStore } from "../state/desired.js";
import type { AgentContext } from "../system.js";
import { version } from "../../proto/lib/version.js";
import { wireGuardPublicKey } from "../../proto/lib/keys.js";
import { logLevels } from "../config/schema.js";
import type { AgentControl } from "./agent-api.js";
import type { Actions } from "../actions/index.js";
import { listActions, listExecutions, listHooks, verifyHooks } from "./actions-view.js";
import { AgentEventFeed } from "./agent-events.js";
import type { AgentEvent, NodeApiBackend, PeerInfo, PoliciesInfo, StatusSnapshot } from "./backend.js";
import { firewallRulesView, peersView } from "./views.js";
import { userAccessConfigMsg, userAccessPeersMsg } from "./user-access-view.js";
import { bridgeDeviceTraffic } from "./bridge-devices-view.js";
import { allPipelineCounters, peerLatency } from "../telemetry/registry.js";
import { auditStatusMsg } from "../telemetry/audit/view.js";
import { getLogStatus, tailLogs } from "../telemetry/logs/node-api.js";
import { prometheusContentType, renderPrometheus } from "../telemetry/prometheus.js";

// NodeApiBackend for the running agent: status from the runtime, health registry and event
// channel; peers from the desired-state store joined with privhelper's ReadMesh; policies
// from the store with invalid rules from the last compile and counters from ReadFirewall.
// The node API is up before the identity exists (start-up phase 3), so every view also
// answers before `attach` gives it the runtime.

/** Reads for a CLI call must not hang on a wedged privhelper (the CLI gives up at 10 s). */
const readDeadlineMs = 5000;
/** WatchStatus wants "every change": heartbeat and SSE fields change without an event, so look once a second. */
const statusPollMs = 1000;

export interface AgentBackendDeps {
  ctx: AgentContext;
  store: DesiredStateStore;
  signal: AbortSignal;
  control: AgentControl;
}

export class AgentBackend implements NodeApiBackend {
  readonly #ctx: AgentContext;
  readonly #store: DesiredStateStore;
  readonly #control: AgentControl;
  readonly events: AgentEventFeed;
  readonly #statusListeners = new Set<() => void>();
  #runtime: AgentRuntime | undefined;
  #driftCorrections = 0;
  #wake: (() => void) | undefined;

  constructor(d: AgentBackendDeps) {
    this.#ctx = d.ctx;
    this.#store = d.store;
    this.#control = d.control;
    const { ctx } = d;
    this.events = new AgentEventFeed(
      {
        health: ctx.health,
        store: d.store,
        readMesh: (signal) => ctx.priv.readMesh({ interface: ctx.config.mesh.interface }, { signal, timeoutMs: readDeadlineMs }),
        clock: ctx.clock,
        log: ctx.log.child({ component: "nodeapi" }),
      },
      d.signal,
    );
    const poke = (): void => this.#pokeStatus();
    const unsubs = [ctx.health.subscribe(poke), d.store.subscribe(poke)];
    d.signal.addEventListener("abort", () => {
      for (const u of unsubs) u();
      this.#wake?.();
    }, { once: true });
  }

  #actions: Actions | undefined;

  /** The actions feature (open before registration). */
  attachActions(actions: Actions): void {
    this.#actions = actions;
  }

  #needActions(): Actions {
    if (this.#actions === undefined) throw new PlexdError("unavailable", "actions are not running yet");
    return this.#actions;
  }

  async listActions() {
    return listActions(this.#needActions());
  }

  async listExecutions() {
    return { executions: listExecutions(this.#needActions()) };
  }

  async listHooks() {
    return { hooks: listHooks(this.#needActions()) };
  }

  async verifyHooks() {
    return { hooks: await verifyHooks(this.#needActions(), AbortSignal.timeout(30_000)) };
  }

  async auditStatus(recent: number) {
    return auditStatusMsg(this.#ctx.config.audit, this.#runtime?.audit, recent);
  }

  async reloadHooks() {
    const a = this.#needActions();
    await a.hooks.scan("plexd hooks reload");
    return { hooks: listHooks(a) };
  }

  async logStatus() {
    return getLogStatus(this.#ctx.config.logs);
  }

  async tailLogs(opts: { afterSeq: bigint; limit: number }) {
    return tailLogs(opts.afterSeq, opts.limit);
  }

  /** The runtime exists once the identity does; from then on status and drift come from it. */
  attach(runtime: AgentRuntime): void {
    this.#runtime = runtime;
    runtime.onDrift = (corrections) => {
      this.#driftCorrections += corrections.length;
      this.events.drift(corrections);
    };
    this.#pokeStatus();
  }

  /** Background work: the tunnel poll for Watch and the status change check for WatchStatus. */
  run(signal: AbortSignal): Promise<unknown> {
    return Promise.all([this.events.run(signal), this.#watchStatusChanges(signal)]);
  }

  status(): StatusSnapshot {
    const { config, health, phase } = this.#ctx;
    const rt = this.#runtime;
    const sse = rt?.channel?.state();
    const visible = rt?.kernel?.lastPolicy?.visiblePeerIds;
    const peers = Object.keys(this.#store.state.peers);
    const counters: Record<string, number> = { drift_corrections: this.#driftCorrections, kernel_applies: rt?.kernel?.applies ?? 0 };
    for (const [k, v] of Object.entries(rt?.channel?.outcomes ?? {})) counters[`events_${k}`] = v;
    for (const [k, v] of Object.entries(rt?.channel?.verifier.rejected ?? {})) counters[`events_rejected_${k}`] = v;
    return {
      version,
      mode: config.mode,
      phase: phase.current,
      nodeId: rt?.identity.nodeId ?? "",
      meshIp: rt?.identity.meshIp ?? "",
      startedAt: this.#ctx.startedAt,
      binaryChecksum: this.#ctx.binaryChecksum,
      sse: {
        connected: sse?.connected ?? false,
        ...(sse === undefined ? {} : { since: sse.since }),
        reconnects: sse?.reconnects ?? 0,
        lastEventId: rt?.channel?.verifier.replay.lastEventId ?? "",
      },
      ...(rt?.lastHeartbeat === undefined ? {} : { lastHeartbeat: { at: rt.lastHeartbeat.at, ok: rt.lastHeartbeat.ok } }),
      ...(rt?.lastReconcile === undefined ? {} : { lastReconcile: { at: rt.lastReconcile.at, ok: rt.lastReconcile.ok, driftCount: rt.lastReconcile.driftCount ?? 0 } }),
      nat: { publicEndpoint: rt?.nat?.public_endpoint ?? "", type: rt?.nat?.type ?? "" },
      // Peers in the mesh: the ones policy makes visible (all of them before the first compile).
      peerCount: visible === undefined ? peers.length : peers.filter((id) => visible.has(id)).length,
      privhelperOk: health.get("privhelper_unavailable") === undefined,
      health: health.list(),
      counters,
      ...(rt === undefined
        ? {}
        : {
            self: {
              hostname: config.registration.hostname,
              publicKey: this.#publicKeyOf(rt.identity.privateKey),
              interface: config.mesh.interface,
              listenPort: config.mesh.listen_port,
            },
          }),
      logLevel: this.#ctx.log.level,
      pipelines: allPipelineCounters(),
    };
  }

  #publicKey: { of: string; key: string } | undefined;

  /** Derived once per key (a rotation replaces it): WatchStatus asks every second. */
  #publicKeyOf(privateKey: string): string {
    if (this.#publicKey?.of !== privateKey) this.#publicKey = { of: privateKey, key: wireGuardPublicKey(privateKey) };
    return this.#publicKey.key;
  }

  /** AgentService.ReloadConfig and SIGHUP share the reloader; an invalid file answers invalid_argument. */
  reloadConfig(): Promise<{ applied: string[]; restartRequired: string[] }> {
    const reloader = this.#ctx.reloader;
    if (reloader === undefined) return Promise.reject(new PlexdError("unimplemented", "this process cannot reload its configuration"));
    try {
      const plan = reloader.reload("node API");
      this.#pokeStatus();
      return Promise.resolve({ applied: plan.applied, restartRequired: plan.restartRequired });
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** Until the next reload or restart, which set the level from the configuration again. */
  setLogLevel(level: string): Promise<{ previous: string; level: string }> {
    if (!(logLevels as readonly string[]).includes(level)) return Promise.reject(new PlexdError("invalid_argument", `log level must be one of ${logLevels.join(", ")}, got ${JSON.stringify(level)}`));
    const { log } = this.#ctx;
    const previous = log.level;
    log.level = level;
    log.info({ previous, level }, "log level changed through the node API");
    this.#pokeStatus();
    return Promise.resolve({ previous, level });
  }

  async deregister(opts: { purge: boolean; force: boolean }): Promise<{ nodeId: string; purged: boolean; removed: string[]; errors: string[] }> {
    return this.#control.deregister(opts);
  }

  subscribeStatus(listener: () => void): () => void {
    this.#statusListeners.add(listener);
    this.#wake?.();
    return () => this.#statusListeners.delete(listener);
  }

  #pokeStatus(): void {
    for (const l of this.#statusListeners) l();
  }

  async #watchStatusChanges(signal: AbortSignal): Promise<void> {
    let last = "";
    while (!signal.aborted) {
      if (this.#statusListeners.size === 0) {
        await new Promise<void>((resolve) => (this.#wake = resolve));
        this.#wake = undefined;
        continue;
      }
      const now = JSON.stringify(this.status(), (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
      if (now !== last) this.#pokeStatus();
      last = now;
      try {
        await this.#ctx.clock.sleep(statusPollMs, signal);
      } catch {
        return;
      }
    }
  }

  async listPeers(opts: { all: boolean }): Promise<PeerInfo[]> {
    const ctx = this.#ctx;
    // Without privhelper the desired peers are still worth showing, just without tunnel data.
    const live = await ctx.priv.readMesh({ interface: ctx.config.mesh.interface }, { timeoutMs: readDeadlineMs }).catch((err: unknown) => {
      ctx.log.debug({ err: PlexdError.from(err).message }, "ListPeers: ReadMesh failed; answering without live data");
      return undefined;
    });
    const kernel = this.#runtime?.kernel;
    const peers = peersView(Object.values(this.#store.state.peers), live, kernel?.lastPolicy?.visiblePeerIds, opts.all, kernel?.quarantined());
    // RTT and loss from the metrics pipeline's latest latency probe (docs/telemetry.md#metrics).
    for (const p of peers) {
      const l = peerLatency(p.peerId);
      if (l === undefined) continue;
      p.lossPercent = l.lossPercent;
      if (l.received > 0) p.rttMs = l.rttMs;
    }
    return peers;
  }

  /** GetBridgeStatus: `enabled` false outside mode: bridge. */
  async bridgeStatus() {
    const st = this.#runtime?.bridge?.status();
    if (!st) return { enabled: false };
    const live = await bridgeDeviceTraffic(this.#ctx.priv, st.devices.filter((d) => d.error === undefined).map((d) => d.name), readDeadlineMs);
    return {
      enabled: true,
      services: st.services.map((s) => ({ name: s.name, running: s.running, detail: s.detail, error: s.error ?? "", counters: Object.fromEntries(Object.entries(s.counters).map(([k, v]) => [k, BigInt(Math.max(0, Math.round(v)))])) })),
      routeCount: st.routes.count,
      forwarding: st.routes.forwarding,
      routesError: st.routes.error ?? "",
      devices: st.devices.map((d) => ({ name: d.name, listenPort: d.listenPort, peers: d.peers, error: d.error ?? "", ...live.get(d.name) })),
    };
  }

  /** GetUserAccessConfig (docs/bridge.md#user-access). */
  userAccessConfig(user: string) {
    const rt = this.#runtime;
    return Promise.resolve(userAccessConfigMsg(rt?.bridge, this.#ctx.config, rt?.nat?.public_endpoint, user));
  }

  /** ListUserAccessPeers: `enabled` false where user access does not run. */
  userAccessPeers() {
    return userAccessPeersMsg(this.#runtime?.bridge, this.#ctx.priv);
  }

  async listPolicies(opts: { rules: boolean }): Promise<PoliciesInfo> {
    const { config, priv, log } = this.#ctx;
    const compiled = this.#runtime?.kernel?.lastPolicy;
    // Rule counters live only in the kernel: no cached copy would be true. Without privhelper
    // the policies are still answered (plexd status shows privhelper as unreachable).
    const firewallRules =
      opts.rules && config.policy.enabled
        ? await priv.readFirewall({}, { timeoutMs: readDeadlineMs }).then(firewallRulesView, (err: unknown) => {
            log.debug({ err: PlexdError.from(err).message }, "ListPolicies: ReadFirewall failed; answering without rules");
            return [];
          })
        : [];
    return {
      policies: this.#store.state.policies.map((p) => ({ id: p.id, rules: p.rules.map((r) => ({ ...r })) })),
      invalidRules: (compiled?.invalidRules ?? []).map((r) => ({ policyId: r.policy_id, index: r.index, reason: r.reason })),
      firewallRules,
      // With policy disabled every peer is visible and nothing is filtered.
      default: config.policy.enabled ? config.policy.default : "allow",
    };
  }

  async metrics(): Promise<{ contentType: string; text: string }> {
    const m = this.#runtime?.metrics;
    const text = await renderPrometheus({ node: m?.latest.node, tunnels: m?.latest.tunnels, latency: m?.latency, agent: m?.latest.agent, pipelines: allPipelineCounters() });
    return { contentType: prometheusContentType, text };
  }

  subscribeEvents(listener: (event: AgentEvent) => void): () => void {
    return this.events.subscribe(listener);
  }
}
