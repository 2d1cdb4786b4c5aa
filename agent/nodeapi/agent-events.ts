import type { ReadMeshResponse } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError, isCancellation } from "../../proto/lib/errors.js";
import type { HealthCondition, HealthRegistry } from "../health/registry.js";
import type { Correction } from "../reconcile/drift.js";
import type { DesiredStateStore } from "../state/desired.js";
import type { Clock } from "../util/clock.js";
import type { Logger } from "../util/log.js";
import type { AgentEvent } from "./backend.js";

// The change feed behind AgentService.Watch: health changes and policy changes as they
// happen, drift corrections from the reconcile cycle, and tunnel events (handshake, peer
// up/down) from the kernel. WireGuard tells nobody about a handshake, so tunnels are read
// back from privhelper every `pollMs`, but only while someone is watching: an idle agent
// makes no extra calls.

/** WireGuard gives up on a session after REJECT_AFTER_TIME (180 s) without a new handshake. */
export const tunnelDownAfterMs = 180_000;

type Event = Omit<AgentEvent, "at">;

export interface TunnelMark {
  id: string;
  handshake: number;
  up: boolean;
}

/**
 * Tunnel events between two reads of the mesh (pure). `prev` undefined is the baseline read:
 * it records the marks and reports nothing, so a new watcher does not see old news.
 */
export function tunnelEvents(
  prev: ReadonlyMap<string, TunnelMark> | undefined,
  live: Pick<ReadMeshResponse, "peers">,
  now: number,
  idOf: (publicKey: string) => string | undefined,
): { marks: Map<string, TunnelMark>; events: Event[] } {
  const marks = new Map<string, TunnelMark>();
  const events: Event[] = [];
  for (const p of live.peers) {
    const id = idOf(p.publicKey) ?? `key ${p.publicKey.slice(0, 8)}…`;
    const handshake = p.lastHandshake === undefined ? 0 : Number(p.lastHandshake.seconds) * 1000;
    const up = handshake > 0 && now - handshake <= tunnelDownAfterMs;
    marks.set(p.publicKey, { id, handshake, up });
    if (prev === undefined) continue;
    const before = prev.get(p.publicKey);
    const where = p.endpoint === "" ? "" : ` with ${p.endpoint}`;
    if (handshake > (before?.handshake ?? 0)) events.push({ kind: "handshake", subject: id, detail: `handshake${where}` });
    if (up && before?.up !== true) events.push({ kind: "peer_up", subject: id, detail: `tunnel up${where}` });
    if (!up && before?.up === true) events.push({ kind: "peer_down", subject: id, detail: `no handshake for ${tunnelDownAfterMs / 1000} s` });
  }
  for (const [key, before] of prev ?? []) {
    if (!marks.has(key) && before.up) events.push({ kind: "peer_down", subject: before.id, detail: "removed from the mesh" });
  }
  return { marks, events };
}

/** Health registry snapshots → one event per raised, changed or cleared condition (pure). */
export function healthEvents(prev: ReadonlyMap<string, HealthCondition>, now: readonly HealthCondition[]): Event[] {
  const out: Event[] = [];
  const next = new Map(now.map((c) => [c.code, c]));
  for (const c of now) {
    const p = prev.get(c.code);
    if (p === undefined || p.severity !== c.severity || p.text !== c.text) out.push({ kind: "health_changed", subject: c.code, detail: `${c.severity}: ${c.text}` });
  }
  for (const code of prev.keys()) if (!next.has(code)) out.push({ kind: "health_changed", subject: code, detail: "cleared" });
  return out;
}

export interface AgentEventFeedDeps {
  health: HealthRegistry;
  store: DesiredStateStore;
  readMesh: (signal: AbortSignal) => Promise<ReadMeshResponse>;
  clock: Clock;
  log: Logger;
  /** Tunnel poll period while watched (default 2 s). */
  pollMs?: number;
}

export class AgentEventFeed {
  readonly #d: AgentEventFeedDeps;
  readonly #listeners = new Set<(e: AgentEvent) => void>();
  #wake: (() => void) | undefined;
  #marks: Map<string, TunnelMark> | undefined;

  constructor(d: AgentEventFeedDeps, signal: AbortSignal) {
    this.#d = d;
    let known = new Map(d.health.list().map((c) => [c.code, c]));
    const unsubs = [
      d.health.subscribe((conditions) => {
        for (const e of healthEvents(known, conditions)) this.emit(e);
        known = new Map(conditions.map((c) => [c.code, c]));
      }),
      d.store.subscribe((slices, state) => {
        if (!slices.has("policies")) return;
        const ids = state.policies.map((p) => p.id);
        this.emit({ kind: "policy_changed", subject: ids.join(",") || "(none)", detail: `${ids.length} ${ids.length === 1 ? "policy" : "policies"} in effect` });
      }),
    ];
    signal.addEventListener("abort", () => {
      for (const u of unsubs) u();
      this.#wake?.();
    }, { once: true });
  }

  subscribe(listener: (e: AgentEvent) => void): () => void {
    this.#listeners.add(listener);
    this.#wake?.();
    return () => this.#listeners.delete(listener);
  }

  emit(e: Event): void {
    const event: AgentEvent = { at: this.#d.clock.now(), ...e };
    for (const l of this.#listeners) l(event);
  }

  /** The corrections of one reconcile cycle (AgentRuntime.onDrift). */
  drift(corrections: readonly Correction[]): void {
    for (const c of corrections) this.emit({ kind: "drift_corrected", subject: c.type, detail: c.detail });
  }

  /** Polls the tunnels while anyone is subscribed; runs until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const { clock, log } = this.#d;
    while (!signal.aborted) {
      if (this.#listeners.size === 0) {
        this.#marks = undefined; // the next watcher starts from a fresh baseline
        await new Promise<void>((resolve) => (this.#wake = resolve));
        this.#wake = undefined;
        continue;
      }
      try {
        const live = await this.#d.readMesh(signal);
        const idOf = new Map(Object.values(this.#d.store.state.peers).map((p) => [p.public_key, p.id]));
        const { marks, events } = tunnelEvents(this.#marks, live, clock.now(), (k) => idOf.get(k));
        this.#marks = marks;
        for (const e of events) this.emit(e);
      } catch (err) {
        if (signal.aborted || isCancellation(err)) return;
        log.debug({ err: PlexdError.from(err).message }, "watch: mesh read failed; retrying");
      }
      try {
        await clock.sleep(this.#d.pollMs ?? 2000, signal);
      } catch {
        return;
      }
    }
  }
}
