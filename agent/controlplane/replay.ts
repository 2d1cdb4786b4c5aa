import { z } from "zod";
import { PlexdError } from "../../proto/lib/errors.js";

// Replay protection for the signed event stream (docs/architecture.md#the-control-plane-channel).
// Both structures are made durable before an event is dispatched (replay-journal.ts: the
// cache/events.json snapshot plus cache/events.journal, docs/decisions.md#replay-protection-across-crashes) so a captured event
// replayed after a restart or a crash is still refused.

export const nonceCacheCapacity = 10_000;
/**
 * Remembering the last 1024 ids would stop a live duplicate; as many as nonces are kept, so
 * an event id is remembered as long as a nonce is: a captured frame of an event the agent
 * handled, which it never saw itself (a retransmission in flight when it was killed), is
 * refused for as long as it could pass the staleness check (docs/decisions.md).
 */
export const recentEventIdCapacity = nonceCacheCapacity;

interface NonceEntry {
  nonce: string;
  expiresAt: number;
}

/**
 * Nonces of verified events, each kept until its event's issued_at + 300 s. When full, the entry
 * that expires soonest is evicted. A binary min-heap on expiry makes purge and eviction
 * O(log n); every heap entry is also in the map (entries leave only through the heap).
 */
export class NonceCache {
  private readonly map = new Map<string, NonceEntry>();
  private readonly heap: NonceEntry[] = [];

  constructor(readonly capacity: number = nonceCacheCapacity) {
    if (!(capacity >= 1)) throw new PlexdError("invalid_argument", "nonce cache capacity must be >= 1");
  }

  get size(): number {
    return this.map.size;
  }

  /** True if the nonce is recorded and its entry has not expired at `now`. */
  has(nonce: string, now: number): boolean {
    const e = this.map.get(nonce);
    return e !== undefined && e.expiresAt >= now;
  }

  /**
   * Records a nonce unless it is already live. Returns false for a replay. An entry is live up
   * to and including its expiry instant, matching the inclusive ±300 s staleness window.
   */
  record(nonce: string, expiresAt: number, now: number): boolean {
    this.purge(now);
    if (this.map.has(nonce)) return false;
    if (this.map.size >= this.capacity) this.evictOne();
    const e = { nonce, expiresAt };
    this.map.set(nonce, e);
    this.push(e);
    return true;
  }

  /** Drops every entry that expired before `now`. Returns how many were dropped. */
  purge(now: number): number {
    let n = 0;
    for (let top = this.heap[0]; top !== undefined && top.expiresAt < now; top = this.heap[0]) {
      this.evictOne();
      n++;
    }
    return n;
  }

  toJSON(): Array<[string, number]> {
    return this.heap.map((e) => [e.nonce, e.expiresAt] as [string, number]);
  }

  /** Restores entries; expired ones (relative to `now`) are skipped, overflow keeps the latest-expiring. */
  static fromJSON(json: unknown, now: number, capacity: number = nonceCacheCapacity): NonceCache {
    const parsed = nonceListSchema.safeParse(json);
    if (!parsed.success) throw new PlexdError("data_loss", `invalid persisted nonce list: ${parsed.error.message}`);
    const c = new NonceCache(capacity);
    const sorted = parsed.data.filter(([, exp]) => exp >= now).sort((a, b) => b[1] - a[1]);
    for (const [nonce, exp] of sorted.slice(0, capacity)) {
      if (!c.map.has(nonce)) {
        const e = { nonce, expiresAt: exp };
        c.map.set(nonce, e);
        c.push(e);
      }
    }
    return c;
  }

  private evictOne(): void {
    const top = this.heap[0];
    if (top === undefined) return;
    const last = this.heap.pop() as NonceEntry;
    if (this.heap.length > 0) {
      this.heap[0] = last;
      this.down(0);
    }
    this.map.delete(top.nonce);
  }

  private push(e: NonceEntry): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = h[p] as NonceEntry;
      if (parent.expiresAt <= e.expiresAt) break;
      h[i] = parent;
      i = p;
    }
    h[i] = e;
  }

  private down(i: number): void {
    const h = this.heap;
    const e = h[i] as NonceEntry;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      let c = l;
      if (r < h.length && (h[r] as NonceEntry).expiresAt < (h[l] as NonceEntry).expiresAt) c = r;
      const child = h[c] as NonceEntry;
      if (child.expiresAt >= e.expiresAt) break;
      h[i] = child;
      i = c;
    }
    h[i] = e;
  }
}

/** The last N dispatched event ids, with O(1) membership. */
export class EventIdRing {
  private readonly ring: (string | undefined)[];
  private readonly set = new Set<string>();
  private head = 0;

  constructor(readonly capacity: number = recentEventIdCapacity) {
    if (!(capacity >= 1)) throw new PlexdError("invalid_argument", "event id ring capacity must be >= 1");
    this.ring = new Array<string | undefined>(capacity);
  }

  get size(): number {
    return this.set.size;
  }

  has(id: string): boolean {
    return this.set.has(id);
  }

  add(id: string): void {
    if (this.set.has(id)) return;
    const old = this.ring[this.head];
    if (old !== undefined) this.set.delete(old);
    this.ring[this.head] = id;
    this.set.add(id);
    this.head = (this.head + 1) % this.capacity;
  }

  /** Oldest first. */
  toJSON(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.capacity; i++) {
      const id = this.ring[(this.head + i) % this.capacity];
      if (id !== undefined) out.push(id);
    }
    return out;
  }

  static fromJSON(json: unknown, capacity: number = recentEventIdCapacity): EventIdRing {
    const parsed = z.array(z.string()).safeParse(json);
    if (!parsed.success) throw new PlexdError("data_loss", `invalid persisted event id list: ${parsed.error.message}`);
    const r = new EventIdRing(capacity);
    for (const id of parsed.data.slice(-capacity)) r.add(id);
    return r;
  }
}

const nonceListSchema = z.array(z.tuple([z.string().min(1).max(128), z.number().finite()]));

/** The persisted shape of cache/events.json (docs/architecture.md#the-control-plane-channel). */
export interface EventStreamBookkeepingJson {
  version: 1;
  last_event_id: string | null;
  recent_event_ids: string[];
  nonces: Array<[string, number]>;
}

const bookkeepingSchema = z.object({
  version: z.literal(1),
  last_event_id: z.string().nullable(),
  recent_event_ids: z.array(z.string()),
  nonces: nonceListSchema,
});

/** Nonce cache, recent event ids and the Last-Event-ID cursor, persisted together. */
export class ReplayGuard {
  lastEventId: string | undefined;

  constructor(
    readonly nonces: NonceCache = new NonceCache(),
    readonly recent: EventIdRing = new EventIdRing(),
    lastEventId?: string,
  ) {
    this.lastEventId = lastEventId;
  }

  toJSON(): EventStreamBookkeepingJson {
    return {
      version: 1,
      last_event_id: this.lastEventId ?? null,
      recent_event_ids: this.recent.toJSON(),
      nonces: this.nonces.toJSON(),
    };
  }

  /** Throws PlexdError(data_loss) on a corrupt file; the caller decides whether to start empty. */
  static fromJSON(json: unknown, now: number): ReplayGuard {
    const parsed = bookkeepingSchema.safeParse(json);
    if (!parsed.success) throw new PlexdError("data_loss", `invalid event-stream bookkeeping: ${parsed.error.message}`);
    const d = parsed.data;
    return new ReplayGuard(NonceCache.fromJSON(d.nonces, now), EventIdRing.fromJSON(d.recent_event_ids), d.last_event_id ?? undefined);
  }
}
