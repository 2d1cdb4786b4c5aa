import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { z } from "zod";
import type { Logger } from "../util/log.js";
import type { BridgeInput, BridgeService, BridgeServiceStatus } from "./service.js";
import { RelayEngine, RelayRejection, type RelayCounters, type RelaySessionInput, type RelaySessionView } from "./relay-engine.js";

// The bridge service "relay" (docs/bridge.md#relay): converges the RelayEngine to the control
// plane's relay sessions — the `relay_config.sessions` list of the bridge's desired state, into
// which the manager's store folds the state pull and the `relay_session_assigned` / `_revoked`
// events. Sessions live in this process only: an agent restart ends them, and the first sync
// recreates every one that is still listed.

export const relaySessionSchema = z.object({
  session_id: z.string().min(1).max(128),
  peer_a_id: z.string().min(1),
  peer_b_id: z.string().min(1),
  peer_a_endpoint: z.string().min(1),
  peer_b_endpoint: z.string().min(1),
  expires_at: z.string().refine((s) => !Number.isNaN(Date.parse(s)), "must be an RFC 3339 timestamp"),
  relay_port: z.number().int().min(1).max(65535).nullish(),
});
export type RelayAssignment = z.infer<typeof relaySessionSchema>;

/** The `bridge.relay` config section, as the service reads it. */
export interface RelayServiceConfig {
  enabled: boolean;
  listen_port: number;
  max_sessions: number;
  session_ttl: { ms: number };
}

export interface RelayStatus extends BridgeServiceStatus {
  sessions: RelaySessionView[];
  /** Sessions the relay refused, with the reason (latest per session id). */
  rejected: { session_id: string; reason: string }[];
}

export interface RelayServiceOptions {
  log: Logger;
  now?: () => number;
  /** `host` → IPv4 literal; default DNS (IPv4 only). */
  resolveHost?: (host: string) => Promise<string>;
}

const zeroCounters: RelayCounters = {
  sessions: 0,
  bytes_relayed_total: 0,
  packets_relayed_total: 0,
  relay_unknown_source_total: 0,
  relay_ambiguous_total: 0,
  rejections_total: 0,
  send_errors_total: 0,
  sessions_expired_total: 0,
  sessions_idle_total: 0,
  sessions_revoked_total: 0,
};

async function dnsIPv4(host: string): Promise<string> {
  if (isIP(host) === 4) return host;
  return (await lookup(host, { family: 4 })).address;
}

function splitHostPort(ep: string): { host: string; port: number } | undefined {
  const i = ep.lastIndexOf(":");
  if (i <= 0) return undefined;
  const port = Number(ep.slice(i + 1));
  if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  return { host: ep.slice(0, i), port };
}

export class RelayService implements BridgeService {
  readonly name = "relay" as const;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #resolve: (host: string) => Promise<string>;
  #engine: RelayEngine | undefined;
  #cfg: RelayServiceConfig | undefined;
  #detail = "not started";
  /** What the control plane wants relayed, by session id. */
  readonly #desired = new Map<string, RelayAssignment>();
  /** Invalid items already logged (the same list comes with every sync). */
  readonly #invalidLogged = new Set<string>();
  /** The assignment each engine session was built from (to tell a re-send with new content). */
  readonly #built = new Map<string, string>();
  readonly #rejected = new Map<string, string>();
  /** Counters of engines that were replaced by a reconfiguration, so totals keep growing. */
  #carried: RelayCounters = { ...zeroCounters };
  #queue: Promise<void> = Promise.resolve();

  constructor(opts: RelayServiceOptions) {
    this.#log = opts.log;
    this.#now = opts.now ?? Date.now;
    this.#resolve = opts.resolveHost ?? dnsIPv4;
  }

  wanted(input: BridgeInput): boolean {
    return input.config.bridge.relay.enabled;
  }

  /** Starts the relay (or restarts it when its port or limits changed) and converges its sessions. */
  apply(input: BridgeInput): Promise<void> {
    const block = input.desired.relay_config;
    // Absent block: leave the sessions as they are; present: exactly its list.
    if (block !== undefined) this.#setDesired(Array.isArray(block.sessions) ? (block.sessions as unknown[]) : []);
    return this.configure(input.config.bridge.relay);
  }

  /** Starts the relay, or restarts it when its port or limits changed; disabled stops it. Then converges. */
  configure(cfg: RelayServiceConfig): Promise<void> {
    return this.#serial(async () => {
      const prev = this.#cfg;
      this.#cfg = cfg;
      if (!cfg.enabled) {
        await this.#stopEngine();
        this.#detail = "disabled";
        return;
      }
      const same = prev && this.#engine && prev.listen_port === cfg.listen_port && prev.max_sessions === cfg.max_sessions && prev.session_ttl.ms === cfg.session_ttl.ms;
      if (same) {
        await this.#converge();
        return;
      }
      await this.#stopEngine();
      const engine = new RelayEngine({
        listenPort: cfg.listen_port,
        maxSessions: cfg.max_sessions,
        idleMs: cfg.session_ttl.ms,
        now: this.#now,
        onLearn: (session, peer, address) => this.#log.info({ session_id: session, peer_id: peer, address }, "relay learned a side's address"),
        onEnd: (session, reason) => this.#ended(session, reason),
        onUnknownSource: (port, address) => this.#log.debug({ port, address }, "relay datagram from an unknown source dropped"),
      });
      try {
        await engine.start();
      } catch (err) {
        this.#detail = err instanceof Error ? err.message : String(err);
        this.#log.error({ port: cfg.listen_port, err: this.#detail }, "relay could not start");
        throw err;
      }
      this.#engine = engine;
      this.#detail = `listening on UDP ${cfg.listen_port}`;
      this.#log.info({ port: cfg.listen_port, max_sessions: cfg.max_sessions, session_ttl_ms: cfg.session_ttl.ms }, "relay started");
      await this.#converge();
    });
  }

  stop(): Promise<void> {
    return this.#serial(async () => {
      await this.#stopEngine();
      this.#detail = "stopped";
    });
  }

  #setDesired(sessions: readonly unknown[]): void {
    this.#desired.clear();
    sessions.forEach((item, i) => {
      const r = relaySessionSchema.safeParse(item);
      if (r.success) {
        this.#desired.set(r.data.session_id, r.data);
        return;
      }
      const text = JSON.stringify(item);
      if (this.#invalidLogged.has(text)) return;
      this.#invalidLogged.add(text);
      this.#log.warn({ index: i, problems: r.error.issues.map((x) => `${x.path.join(".")}: ${x.message}`) }, "relay session invalid; skipped");
    });
    for (const id of this.#rejected.keys()) if (!this.#desired.has(id)) this.#rejected.delete(id);
  }

  status(): RelayStatus {
    const live = this.#engine?.counters ?? zeroCounters;
    const counters: Record<string, number> = {};
    for (const k of Object.keys(zeroCounters) as (keyof RelayCounters)[]) counters[k] = k === "sessions" ? live.sessions : this.#carried[k] + live[k];
    counters.max_sessions = this.#cfg?.max_sessions ?? 0;
    const running = this.#engine?.running ?? false;
    return {
      name: "relay",
      running,
      detail: this.#detail,
      counters,
      heartbeatInBridge: true,
      heartbeat: { relay_enabled: running, active_relay_sessions: live.sessions },
      capabilities: running && this.#cfg ? { relay: "true", relay_listen_port: String(this.#cfg.listen_port) } : {},
      sessions: this.#engine?.sessions() ?? [],
      rejected: [...this.#rejected].map(([session_id, reason]) => ({ session_id, reason })),
    };
  }

  #serial(fn: () => Promise<void>): Promise<void> {
    const next = this.#queue.then(fn);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #stopEngine(): Promise<void> {
    const e = this.#engine;
    if (!e) return;
    this.#engine = undefined;
    await e.stop();
    for (const k of Object.keys(zeroCounters) as (keyof RelayCounters)[]) if (k !== "sessions") this.#carried[k] += e.counters[k];
    this.#built.clear();
  }

  #ended(id: string, reason: string): void {
    this.#built.delete(id);
    // An idle session the control plane still lists comes back with the next sync (a reconcile
    // cycle at the latest); an expired one is skipped from then on.
    if (reason === "expired" || reason === "idle") this.#log.info({ session_id: id, reason }, "relay session ended");
  }

  async #converge(): Promise<void> {
    const engine = this.#engine;
    if (!engine) return;
    for (const id of engine.ids()) {
      if (!this.#desired.has(id)) {
        engine.remove(id, "revoked");
        this.#built.delete(id);
        this.#log.info({ session_id: id }, "relay session revoked");
      }
    }
    const now = this.#now();
    for (const [id, a] of this.#desired) {
      const text = JSON.stringify(a);
      if (Date.parse(a.expires_at) <= now) {
        if (engine.has(id)) engine.remove(id, "expired");
        continue;
      }
      if (engine.has(id)) {
        if (this.#built.get(id) === text) continue;
        engine.remove(id, "replaced");
        this.#built.delete(id);
      }
      try {
        const input = await this.#input(a, this.#cfg!.listen_port);
        await engine.add(input);
        this.#built.set(id, text);
        this.#rejected.delete(id);
        this.#log.info({ session_id: id, peer_a_id: a.peer_a_id, peer_b_id: a.peer_b_id, port: input.port }, "relay session added");
      } catch (err) {
        const reason = err instanceof RelayRejection ? err.reason : err instanceof Error ? err.message : String(err);
        if (this.#rejected.get(id) !== reason) this.#log.warn({ session_id: id, reason }, "relay session rejected");
        this.#rejected.set(id, reason);
      }
    }
  }

  async #input(a: RelayAssignment, defaultPort: number): Promise<RelaySessionInput> {
    const expiresAt = Date.parse(a.expires_at);
    const side = async (id: string, ep: string, key: string) => {
      const hp = splitHostPort(ep);
      if (!hp) throw this.#reject(`${key} ${ep} is not host:port`);
      try {
        return { id, ip: await this.#resolve(hp.host), port: hp.port };
      } catch {
        throw this.#reject(`${key} ${ep} does not resolve`);
      }
    };
    return {
      id: a.session_id,
      peerA: await side(a.peer_a_id, a.peer_a_endpoint, "peer_a_endpoint"),
      peerB: await side(a.peer_b_id, a.peer_b_endpoint, "peer_b_endpoint"),
      expiresAt,
      port: a.relay_port ?? defaultPort,
    };
  }

  #reject(reason: string): ResolveRejection {
    if (this.#engine) this.#engine.counters.rejections_total++;
    return new ResolveRejection(reason);
  }
}

/** A rejection found before the engine saw the session (already counted). */
class ResolveRejection extends RelayRejection {}

