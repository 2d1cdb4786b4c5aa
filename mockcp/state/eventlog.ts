import type { SigningKey } from "./signer.js";

/** One event as the CP decided it: what replay re-signs with a fresh issued_at and nonce. */
export interface LoggedEvent {
  event_id: string;
  event_type: string;
  payload: Record<string, unknown>;
  /** Original issue time (ms since epoch); replay skips old action_requests by it. */
  issuedAt: number;
  /**
   * Pins the signing key, used for `signing_key_rotated`: it must verify against the key
   * the node trusted before the rotation, also when replayed after valid_from.
   */
  signWith?: SigningKey;
}

export interface EventLogOptions {
  /** Keep at least this many events (1000). */
  minEvents?: number;
  /** ...or everything younger than this, whichever keeps more (10 min). */
  minAgeMs?: number;
}

// An action_request older than this is never replayed, mirroring the
// agent's 300 s staleness window.
const actionReplayWindowMs = 300_000;

/** Per-node replay buffer for the SSE stream. */
export class EventLog {
  readonly #events: LoggedEvent[] = [];
  readonly #ids = new Set<string>();
  readonly #minEvents: number;
  readonly #minAgeMs: number;

  constructor(opts: EventLogOptions = {}) {
    this.#minEvents = opts.minEvents ?? 1000;
    this.#minAgeMs = opts.minAgeMs ?? 600_000;
  }

  has(eventId: string): boolean {
    return this.#ids.has(eventId);
  }

  append(event: LoggedEvent, now: number): void {
    this.#events.push(event);
    this.#ids.add(event.event_id);
    this.prune(now);
  }

  prune(now: number): void {
    while (this.#events.length > this.#minEvents) {
      const oldest = this.#events[0];
      if (oldest === undefined || now - oldest.issuedAt <= this.#minAgeMs) break;
      this.#events.shift();
      this.#ids.delete(oldest.event_id);
    }
  }

  /**
   * Events after `eventId` in original order, or `undefined` when the id is unknown
   * (then the CP sends live events only).
   */
  after(eventId: string, now: number): LoggedEvent[] | undefined {
    this.prune(now);
    const idx = this.#events.findIndex((e) => e.event_id === eventId);
    if (idx < 0) return undefined;
    return this.#events
      .slice(idx + 1)
      .filter((e) => !(e.event_type === "action_request" && now - e.issuedAt > actionReplayWindowMs));
  }

  last(): LoggedEvent | undefined {
    return this.#events.at(-1);
  }

  all(): readonly LoggedEvent[] {
    return this.#events;
  }
}
