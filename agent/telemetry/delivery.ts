import { gzip } from "node:zlib";
import { promisify } from "node:util";
import { Backoff, parseRetryAfter } from "../controlplane/backoff.js";
import type { Logger } from "../util/log.js";

// The delivery engine shared by the metrics, logs and audit pipelines (docs/telemetry.md#delivery).
// Collection pushes into a bounded ring and never waits; one sender per pipeline takes the
// oldest entries, gzips them and posts them, with at most one request in flight. Entries leave
// the ring only when the control plane answers 202 (or when the ring overflows, which is the
// only in-process loss and is counted).

export type PipelineName = "metrics" | "logs" | "audit";

export interface PipelineCounters {
  /** Entries in the ring (unsent plus the batch in flight). */
  buffered: number;
  /** Entries the control plane accepted (202). */
  sent_total: number;
  /** Entries evicted because the ring was full (newest data wins). */
  dropped_overflow_total: number;
  /** Entries dropped because the control plane refused them for good (400/403/404/...). */
  dropped_rejected_total: number;
  /** A single entry that still got 413 on its own. */
  dropped_oversize_total: number;
  /** Requests that failed: network error, timeout, 401, 429, 5xx. */
  send_errors_total: number;
  /** Batches accepted (202). */
  sent_batches_total: number;
  /** Time of the last attempt (RFC 3339), or null before the first. */
  last_flush_at: string | null;
  /** Outcome of the last attempt: "ok", "http 429", "network: ...". */
  last_flush_outcome: string | null;
  last_success_at: string | null;
  /** Last failure, kept after later successes so an operator can see what went wrong. */
  last_error: string | null;
  /** Why sending waits, if it does: "unauthorized" until the identity is renewed, "rate_limited" until a time. */
  paused: "unauthorized" | "rate_limited" | null;
  paused_until: string | null;
  /** Sequence number of the newest committed entry (0 before any). */
  committed_seq: number;
  /** Entries ever pushed: sent + dropped + buffered, always. */
  pushed_total: number;
}

export interface SendResult {
  status: number;
  retryAfter?: string;
  /** Short description of a non-202 answer, for last_error and the log. */
  detail?: string;
}

export interface Pipeline<T> {
  /** Never blocks; returns the item's sequence number. Evicts (and counts) the oldest entry when full. */
  push(item: T): number;
  /** After a 202: every entry with a sequence number <= lastSeq is committed. */
  onCommitted(cb: (lastSeq: number) => void): void;
  counters(): PipelineCounters;
  /** Sends everything unsent now (unless paused by 401/429), waiting for any request in flight first. */
  flush(): Promise<void>;
  /** Stops the timers and makes one final flush attempt, bounded by closeTimeoutMs. */
  close(): Promise<void>;
  /** Lifts a 401 pause (called when the node identity is renewed or accepted again). */
  resume(): void;
  readonly name: PipelineName;
}

export interface PipelineOptions<T> {
  name: PipelineName;
  /** Read at every use: a function follows a configuration reload. */
  batchIntervalMs: number | (() => number);
  batchMaxSize: number | (() => number);
  /** Fixed for the pipeline's life (the ring is allocated once). */
  bufferSize: number;
  /** Body framing: metrics are a JSON array, logs and audit are NDJSON. */
  format: "json-array" | "ndjson";
  /** One entry's JSON text (no trailing newline); called once, at push time. */
  encode: (item: T) => string;
  /** Posts one gzip body of `count` entries. Network failures reject. */
  send: (body: Buffer, count: number, signal: AbortSignal) => Promise<SendResult>;
  /** Final-flush bound on close (node_api.shutdown_timeout); default 5 s. */
  closeTimeoutMs?: number;
  /** Uncompressed body cap; a batch stops before it would pass this (a lone entry is sent anyway). Default 4 MiB. */
  maxBodyBytes?: number;
  /** Called on 401, so the caller can start identity recovery. */
  onUnauthorized?: () => void;
  log?: Logger;
  now?: () => number;
  /** Injectable for tests; default async gzip on the thread pool. */
  compress?: (raw: Buffer) => Promise<Buffer>;
  backoff?: Backoff;
}

const defaultMaxBody = 4 * 1024 * 1024;
/**
 * gzip level 1: on log text it takes about 40% of the CPU of the default level 6 for bodies
 * about 12% larger (docs/telemetry.md#delivery); telemetry shares the node's CPU with its
 * workloads, so CPU is the scarcer of the two.
 */
const gzipLevel = 1;
const pieceChars = 64 * 1024;

/** Entries first..last, taken with batch size `limit`, and their gzip body. */
interface Batch {
  first: number;
  last: number;
  limit: number;
  body: Promise<Buffer>;
}

const gzipAsync = promisify(gzip);

/** Permanent refusals: the same body would be refused again, so the batch is dropped. */
const isPermanent = (s: number): boolean => s >= 400 && s < 500 && s !== 401 && s !== 408 && s !== 413 && s !== 429;

export function createPipeline<T>(opts: PipelineOptions<T>): Pipeline<T> {
  const batchMax = (): number => Math.max(1, typeof opts.batchMaxSize === "function" ? opts.batchMaxSize() : opts.batchMaxSize);
  const intervalMs = (): number => (typeof opts.batchIntervalMs === "function" ? opts.batchIntervalMs() : opts.batchIntervalMs);
  if (!(opts.bufferSize >= 1 && batchMax() >= 1)) throw new Error(`${opts.name}: buffer_size and batch_max_size must be at least 1`);
  const now = opts.now ?? Date.now;
  const compress = opts.compress ?? ((b: Buffer) => gzipAsync(b, { level: gzipLevel }));
  const maxBody = opts.maxBodyBytes ?? defaultMaxBody;
  const backoff = opts.backoff ?? new Backoff();
  const cap = opts.bufferSize;

  // Ring of encoded entries: slot of sequence s is s % cap; entries are [headSeq, nextSeq).
  const texts: (string | undefined)[] = new Array<string | undefined>(cap);
  let headSeq = 1;
  let nextSeq = 1;
  const listeners: ((lastSeq: number) => void)[] = [];

  const c: PipelineCounters = {
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
  };

  let inFlight: { first: number; last: number } | null = null;
  let prepared: Batch | null = null;
  // Entries of the in-flight batch the ring evicted meanwhile: delivered if the batch commits,
  // counted as overflow if it fails, so the overflow counter stays exact.
  let evictedInFlight = 0;
  // 413 halves still to send, as sequence ranges; the top (last element) goes next.
  const splits: { first: number; last: number }[] = [];
  let pausedUntil = 0;
  let unauthorized = false;
  // After a network error or 5xx the batch-full trigger rests until the next interval tick.
  let holdUntilTick = false;
  let closed = false;
  let closing = false;
  let running: Promise<void> | null = null;
  let timer: NodeJS.Timeout | null = null;
  let wake: NodeJS.Timeout | null = null;
  const abort = new AbortController();

  const iso = (ms: number): string => new Date(ms).toISOString();
  const unsent = (): number => nextSeq - headSeq;
  const held = (): boolean => closing || unauthorized || holdUntilTick || now() < pausedUntil;

  function dropHead(): void {
    texts[headSeq % cap] = undefined;
    headSeq++;
  }

  function push(item: T): number {
    const seq = nextSeq++;
    if (seq - headSeq >= cap) {
      if (inFlight !== null && headSeq >= inFlight.first && headSeq <= inFlight.last) evictedInFlight++;
      else c.dropped_overflow_total++;
      dropHead();
    }
    texts[seq % cap] = opts.encode(item);
    if (running === null) {
      if (unsent() >= batchMax() && !held()) kick();
    } else if (prepared === null && inFlight !== null) prepareNext();
    return seq;
  }

  /** The 413 half to send next, with ranges the ring has moved past removed. */
  function pendingSplit(): { first: number; last: number } | undefined {
    while (splits.length > 0 && (splits.at(-1) as { last: number }).last < headSeq) splits.pop();
    return splits.at(-1);
  }

  /**
   * The batch from `first`: the entries up to `until`, at most batchMaxSize, under the body
   * cap. `full` when the size limit or the cap ended it (more entries would not change it).
   */
  function batchFrom(first: number, until: number): { first: number; last: number; raw: Buffer; full: boolean } {
    const limit = batchMax();
    const parts: string[] = [];
    // UTF-8 takes at most 3 bytes per UTF-16 unit: while that bound stays under the cap no
    // entry's exact size is needed (measuring every entry was a real cost per line).
    let bytes = 2;
    let exact = false;
    let s = first;
    for (; s <= until && parts.length < limit; s++) {
      const t = texts[s % cap] as string;
      if (!exact && bytes + 3 * t.length + 1 > maxBody) {
        bytes = 2 + parts.reduce((n, p) => n + Buffer.byteLength(p) + 1, 0);
        exact = true;
      }
      const len = exact ? Buffer.byteLength(t) + 1 : 3 * t.length + 1;
      if (parts.length > 0 && bytes + len > maxBody) break;
      parts.push(t);
      bytes += len;
    }
    return { first, last: s - 1, raw: bodyOf(parts), full: s <= until || parts.length === limit };
  }

  /** The next batch: oldest entries, at most batchMaxSize (or the split limit), under the body cap; its body compressing. */
  function takeBatch(): Batch | null {
    if (unsent() === 0) return null;
    const p = prepared;
    prepared = null;
    // Still exactly what would be taken now: same first entry (nothing committed or evicted
    // differently), same size limit, no 413 half to send instead.
    if (p !== null && p.first === headSeq && p.limit === batchMax() && pendingSplit() === undefined) return p;
    const b = batchFrom(headSeq, pendingSplit()?.last ?? nextSeq - 1);
    return { first: b.first, last: b.last, limit: batchMax(), body: compress(b.raw) };
  }

  /**
   * While a batch is in flight, the next full one is compressed on the thread pool, so the
   * sender posts it as soon as the answer comes (gzip leaves the request-to-request path).
   */
  function prepareNext(): void {
    if (inFlight === null || prepared !== null || splits.length > 0 || nextSeq - 1 - inFlight.last < batchMax()) return;
    const b = batchFrom(inFlight.last + 1, nextSeq - 1);
    if (!b.full) return;
    const body = compress(b.raw);
    // Dropped unused (a failure, a split) it must not surface as an unhandled rejection.
    body.catch(() => undefined);
    prepared = { first: b.first, last: b.last, limit: batchMax(), body };
  }

  /**
   * The body's bytes: `[a,b,...]` or `a\nb\n...\n`. Entries are joined in pieces of at most
   * 64 Ki characters and written into one buffer: one string of the whole batch (hundreds of
   * KB) would be a large object in V8's old generation each time, counting toward the next
   * full garbage collection (a few % of the agent's CPU per line in the log-forward bench).
   */
  function bodyOf(parts: readonly string[]): Buffer {
    const json = opts.format === "json-array";
    const sep = json ? "," : "\n";
    const pieces: string[] = json ? ["["] : [];
    for (let i = 0; i < parts.length; ) {
      let j = i;
      let chars = 0;
      while (j < parts.length && (j === i || chars + parts[j]!.length <= pieceChars)) chars += parts[j++]!.length + 1;
      if (i > 0) pieces.push(sep);
      pieces.push(parts.slice(i, j).join(sep));
      i = j;
    }
    pieces.push(json ? "]" : "\n");
    let total = 0;
    for (const p of pieces) total += Buffer.byteLength(p);
    const buf = Buffer.allocUnsafe(total);
    let at = 0;
    for (const p of pieces) at += buf.write(p, at);
    return buf;
  }

  function commit(last: number): void {
    while (headSeq <= last) dropHead();
    if (last > c.committed_seq) c.committed_seq = last;
    for (const cb of listeners) {
      try {
        cb(last);
      } catch (err) {
        opts.log?.error({ err: String(err), pipeline: opts.name }, "commit listener failed");
      }
    }
  }

  function fail(outcome: string): void {
    c.send_errors_total++;
    c.last_error = outcome;
    c.last_flush_outcome = outcome;
  }

  /** One request. Returns whether the sender may go on at once (202, or a 413 split). */
  async function sendOne(): Promise<boolean> {
    if (unauthorized || now() < pausedUntil) return false;
    const batch = takeBatch();
    if (batch === null) return false;
    const count = batch.last - batch.first + 1;
    inFlight = { first: batch.first, last: batch.last };
    evictedInFlight = 0;
    c.last_flush_at = iso(now());
    let res: SendResult;
    try {
      // The request is on its way before the next batch is put together beside it.
      const answer = opts.send(await batch.body, count, abort.signal);
      prepareNext();
      res = await answer;
    } catch (err) {
      res = { status: 0, detail: `network: ${err instanceof Error ? err.message : String(err)}` };
    } finally {
      inFlight = null;
    }
    const lost = evictedInFlight;
    evictedInFlight = 0;
    const outcome = res.status === 0 ? (res.detail ?? "network error") : `http ${res.status}${res.detail ? `: ${res.detail}` : ""}`;
    if (res.status === 202) {
      c.sent_total += count;
      c.sent_batches_total++;
      c.last_success_at = c.last_flush_at;
      c.last_flush_outcome = "ok";
      backoff.reset();
      commit(batch.last);
      return true;
    }
    c.dropped_overflow_total += lost;
    if (res.status === 413) {
      c.last_flush_outcome = outcome;
      if (count === 1) {
        if (lost === 0) c.dropped_oversize_total++;
        c.last_error = `${outcome} (one entry too large, dropped)`;
        opts.log?.warn({ pipeline: opts.name, seq: batch.first }, "control plane refused a single entry as too large; dropped");
        commit(batch.last);
      } else {
        // The batch may be a prefix of the current half (body cap): keep that half's rest.
        const top = pendingSplit();
        if (top !== undefined) {
          if (top.last > batch.last) top.first = batch.last + 1;
          else splits.pop();
        }
        const mid = batch.first + Math.ceil(count / 2) - 1;
        splits.push({ first: mid + 1, last: batch.last }, { first: batch.first, last: mid });
      }
      return true;
    }
    if (isPermanent(res.status)) {
      // 400/403/404: the same body would be refused again (control-plane rule: do not retry).
      c.dropped_rejected_total += count - lost;
      c.last_error = c.last_flush_outcome = outcome;
      opts.log?.warn({ pipeline: opts.name, status: res.status, entries: count, detail: res.detail }, "control plane refused a telemetry batch; dropped");
      commit(batch.last);
      return true;
    }
    fail(outcome);
    if (res.status === 401) {
      unauthorized = true;
      c.paused = "unauthorized";
      opts.log?.warn({ pipeline: opts.name }, "telemetry paused: identity rejected (401); waiting for it to be renewed");
      opts.onUnauthorized?.();
    } else if (res.status === 429) {
      const sec = parseRetryAfter(res.retryAfter, now());
      const waitMs = sec !== undefined ? sec * 1000 : backoff.next();
      pausedUntil = now() + waitMs;
      c.paused = "rate_limited";
      c.paused_until = iso(pausedUntil);
      opts.log?.info({ pipeline: opts.name, wait_ms: waitMs }, "telemetry rate limited (429); waiting");
      scheduleWake(waitMs);
    } else {
      holdUntilTick = true;
      opts.log?.debug({ pipeline: opts.name, outcome }, "telemetry send failed; retrying at the next batch interval");
    }
    return false;
  }

  /** Sends batches while they succeed and enough is pending (everything when `all`). */
  async function drain(all: boolean): Promise<void> {
    for (;;) {
      if (!(await sendOne()) || closed) return;
      const pending = unsent();
      if (pending === 0) return;
      if (!all && pendingSplit() === undefined && pending < batchMax()) return;
    }
  }

  /** Starts the sender; callers make sure none is running (one request in flight at most). */
  function start(all: boolean): Promise<void> {
    const p = drain(all).finally(() => {
      if (running === p) running = null;
    });
    running = p;
    return p;
  }

  function kick(): void {
    if (running !== null || closing) return;
    start(false).catch((err: unknown) => opts.log?.error({ err: String(err), pipeline: opts.name }, "telemetry sender failed"));
  }

  function scheduleWake(ms: number): void {
    if (wake !== null) clearTimeout(wake);
    wake = setTimeout(() => {
      wake = null;
      pausedUntil = 0;
      c.paused = unauthorized ? "unauthorized" : null;
      c.paused_until = null;
      kick();
    }, ms);
    wake.unref();
  }

  // Interval trigger: checked on a fixed tick; an empty ring sends nothing.
  function tick(): void {
    timer = setTimeout(() => {
      if (closed) return;
      holdUntilTick = false;
      if (unsent() > 0 && running === null) start(true).catch((err: unknown) => opts.log?.error({ err: String(err), pipeline: opts.name }, "telemetry sender failed"));
      tick();
    }, intervalMs());
    timer.unref();
  }
  tick();

  async function close(): Promise<void> {
    if (closed || closing) return;
    closing = true;
    if (timer !== null) clearTimeout(timer);
    if (wake !== null) clearTimeout(wake);
    const bound = opts.closeTimeoutMs ?? 5000;
    let t: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((r) => {
      t = setTimeout(() => {
        abort.abort();
        r();
      }, bound);
    });
    try {
      await Promise.race([
        (async () => {
          if (running !== null) await running.catch(() => undefined);
          // The final attempt goes even during a 429 wait; a 401 pause stays.
          pausedUntil = 0;
          await drain(true);
        })(),
        deadline,
      ]);
    } finally {
      clearTimeout(t);
      closed = true;
    }
  }

  return {
    name: opts.name,
    push,
    onCommitted: (cb) => void listeners.push(cb),
    counters: () => ({ ...c, buffered: unsent(), pushed_total: nextSeq - 1 }),
    flush: async () => {
      // Wait out the request in flight so this flush covers everything pushed before it.
      while (running !== null) await running.catch(() => undefined);
      if (closed || closing) return;
      await start(true);
    },
    close,
    resume: () => {
      if (!unauthorized) return;
      unauthorized = false;
      c.paused = now() < pausedUntil ? "rate_limited" : null;
      kick();
    },
  };
}
