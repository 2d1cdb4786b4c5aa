import type { Logger } from "pino";
import { isAbortError, type Clock } from "../util/clock.js";
import type { Backoff } from "./backoff.js";
import { nonceLifetimeMs, type Envelope, type EnvelopeVerifier } from "./envelope.js";
import type { JournalRecord } from "./replay-journal.js";
import type { StreamResult } from "./sse.js";
import type { SseFrame } from "./sse-decoder.js";

// The event-stream supervisor (docs/architecture.md#the-control-plane-channel): connect,
// verify and dispatch, reconnect with backoff, fall back to polling after 5 minutes without a
// connection, and stop on identity loss (401/404) or 403. It knows nothing about HTTP: `open`
// is one connection attempt (normally openEventStream bound to the node's URL and token).

export interface StreamSink {
  /** The attempt got 200 + text/event-stream. */
  onOpen(): void;
  /** The events that arrived together, in stream order. */
  onEvents(frames: SseFrame[]): Promise<void>;
  onComment(): void;
}

export type OpenStream = (lastEventId: string | undefined, sink: StreamSink, signal: AbortSignal) => Promise<StreamResult>;

export interface EventStreamState {
  connected: boolean;
  /** When `connected` last changed (ms since epoch); start time before the first attempt. */
  since: number;
  /** Connect attempts after the first one. */
  reconnects: number;
  /** When the last event was dispatched, if any. */
  lastEventAt: number | null;
  /** Start of the current run of failed attempts; null while connected. */
  reconnectingSince: number | null;
  /** In the polling fallback (4.6). */
  polling: boolean;
  /** Why the last attempt or connection ended, e.g. "http 503" or "idle_timeout". */
  lastFailure: string | null;
  /** Set when the loop has stopped for good. */
  stopped: null | "forbidden" | "identity_lost" | "aborted";
}

export type EventStreamExit = { reason: "aborted" } | { reason: "forbidden" } | { reason: "identity_lost"; status: 401 | 404 };

export interface RunEventStreamOptions {
  open: OpenStream;
  verifier: EnvelopeVerifier;
  /** Hands a verified event to its handler; unknown types are the dispatcher's to ignore (debug log). */
  dispatch: (envelope: Envelope, verifiedWith: "current" | "previous") => void | Promise<void>;
  clock: Clock;
  backoff: Backoff;
  signal: AbortSignal;
  logger: Logger;
  /** Once per successful connect, the first included: start a reconcile, re-send pending results. */
  onConnected: () => void;
  /** 401 or 404 on the stream (2.7). The loop has ended when this is called. */
  onIdentityLost?: (status: 401 | 404) => void;
  /** GET /state during the polling fallback. Errors are logged, never fatal. */
  poll: (signal: AbortSignal) => Promise<void>;
  /** reconcile.interval; 60 s by default (4.6). A function is read at each poll (a reload may change it). */
  pollIntervalMs?: number | (() => number);
  /** How long without a successful connect before polling starts; 5 min (4.6). */
  fallbackAfterMs?: number;
  onState?: (state: EventStreamState) => void;
  /**
   * Makes the ids and nonces of accepted events durable before they are dispatched
   * (ReplayJournal.commit); one call per batch. Without it they are kept in memory only.
   */
  commit?: (records: JournalRecord[]) => Promise<void>;
  /** The records could not be written: the batch was not dispatched. */
  onCommitFailed?: (err: unknown) => void;
  /** An event over the size limit was skipped: the full state is to be pulled. */
  onOversize?: () => void;
}

/** Ids a Last-Event-ID may carry (4.2: 1..128 characters); anything else is not recorded. */
const plausibleId = (id: string | undefined): id is string => id !== undefined && id.length > 0 && id.length <= 128;

export async function runEventStream(o: RunEventStreamOptions): Promise<EventStreamExit> {
  const { clock, backoff, verifier, logger, signal } = o;
  const pollIntervalMs = (): number => (typeof o.pollIntervalMs === "function" ? o.pollIntervalMs() : (o.pollIntervalMs ?? 60_000));
  const fallbackAfterMs = o.fallbackAfterMs ?? 300_000;
  const state: EventStreamState = {
    connected: false,
    since: clock.now(),
    reconnects: 0,
    lastEventAt: null,
    reconnectingSince: clock.now(),
    polling: false,
    lastFailure: null,
    stopped: null,
  };
  const emit = (): void => o.onState?.({ ...state });
  let failingSince = clock.now();
  let attempts = 0;

  const sink: StreamSink = {
    onOpen() {
      backoff.reset();
      state.connected = true;
      state.since = clock.now();
      state.reconnectingSince = null;
      state.polling = false;
      emit();
      logger.info({ last_event_id: verifier.replay.lastEventId ?? null }, "event stream connected");
      try {
        o.onConnected();
      } catch (err) {
        logger.error({ err }, "onConnected handler failed");
      }
    },
    async onEvents(frames) {
      await handleEventBatch(frames, {
        verifier,
        logger,
        signal,
        dispatch: o.dispatch,
        ...(o.commit ? { commit: o.commit } : {}),
        ...(o.onCommitFailed ? { onCommitFailed: o.onCommitFailed } : {}),
        ...(o.onOversize ? { onOversize: o.onOversize } : {}),
        onDispatched: () => {
          state.lastEventAt = clock.now();
          emit();
        },
      });
    },
    onComment() {},
  };

  const stop = (exit: EventStreamExit): EventStreamExit => {
    state.connected = false;
    state.stopped = exit.reason;
    emit();
    return exit;
  };

  const sleep = async (ms: number): Promise<boolean> => {
    try {
      await clock.sleep(ms, signal);
      return true;
    } catch (err) {
      if (isAbortError(err)) return false;
      throw err;
    }
  };

  const doPoll = async (): Promise<void> => {
    try {
      await o.poll(signal);
    } catch (err) {
      if (!signal.aborted) logger.warn({ err }, "state poll failed during event stream fallback");
    }
  };

  emit();
  while (!signal.aborted) {
    if (attempts++ > 0) state.reconnects++;
    let opened = false;
    const wrapped: StreamSink = {
      onOpen: () => {
        opened = true;
        sink.onOpen();
      },
      onEvents: sink.onEvents,
      onComment: sink.onComment,
    };
    let result: StreamResult;
    try {
      result = await o.open(verifier.replay.lastEventId, wrapped, signal);
    } catch (err) {
      if (signal.aborted) break;
      result = { status: 0, end: "network_error", error: err instanceof Error ? err : new Error(String(err)) };
    }
    if (signal.aborted || result.end === "aborted") break;

    const now = clock.now();
    state.lastFailure = result.end === "http_status" ? `http ${result.status}` : result.end;
    if (opened) {
      state.connected = false;
      state.since = now;
      state.reconnectingSince = now;
      failingSince = now;
      emit();
    }
    const logFields = { status: result.status || null, end: result.end, ...(result.error ? { err: result.error } : {}), ...(result.body ? { body: result.body } : {}) };

    let delay: number;
    if (result.end === "http_status" && (result.status === 401 || result.status === 404)) {
      logger.warn(logFields, "event stream: identity rejected");
      const exit = stop({ reason: "identity_lost", status: result.status });
      o.onIdentityLost?.(result.status);
      return exit;
    } else if (result.end === "http_status" && result.status === 403) {
      logger.error(logFields, "event stream forbidden; stopped until the identity changes or plexd restarts");
      return stop({ reason: "forbidden" });
    } else if (result.end === "http_status" && result.status === 429 && result.retryAfterSec !== undefined) {
      delay = result.retryAfterSec * 1000;
    } else {
      delay = backoff.next();
    }
    logger.info({ ...logFields, retry_in_ms: delay, polling: state.polling }, "event stream disconnected");

    if (!state.polling && now - failingSince >= fallbackAfterMs) {
      state.polling = true;
      emit();
      logger.warn({ since: new Date(failingSince).toISOString() }, "event stream unavailable for 5 minutes; polling state");
      await doPoll();
      continue;
    }
    if (state.polling) {
      if (!(await sleep(Math.max(pollIntervalMs(), result.status === 429 ? delay : 0)))) break;
      await doPoll();
      continue;
    }
    if (!(await sleep(delay))) break;
  }
  return stop({ reason: "aborted" });
}

/** What handleEventBatch needs: the verifier, the handler, and where durability comes from. */
export interface BatchContext {
  verifier: EnvelopeVerifier;
  logger: Logger;
  signal: AbortSignal;
  dispatch: RunEventStreamOptions["dispatch"];
  commit?: RunEventStreamOptions["commit"];
  onCommitFailed?: RunEventStreamOptions["onCommitFailed"];
  onOversize?: () => void;
  onDispatched?: () => void;
}

/**
 * The events that arrived together: verify each (4.4), make the ids and nonces of those that
 * passed durable in one commit, then dispatch them in order. Nothing is dispatched unless its
 * record is on disk.
 */
export async function handleEventBatch(frames: SseFrame[], o: BatchContext): Promise<void> {
  const { verifier, logger, signal } = o;
  // Verify the whole batch, make what passed durable in one write, then dispatch in order.
  type Accepted = { env: Envelope; verifiedWith: "current" | "previous" } | { oversize: number; id: string | undefined };
  const accepted: Accepted[] = [];
  const records: JournalRecord[] = [];
  const ids = new Set<string>();
  for (const f of frames) {
    if ("oversize" in f) {
      verifier.rejected.oversize++;
      logger.warn({ event_type: null, event_id: f.id?.slice(0, 128) ?? null, reason: "oversize", chars: f.oversize, security: true }, "signed event rejected");
      // Handled-and-rejected: a control plane that keeps it for replay must not send it on
      // every reconnect; its effect comes with the state pull that follows.
      if (plausibleId(f.id) && !verifier.replay.recent.has(f.id) && !ids.has(f.id)) {
        ids.add(f.id);
        records.push({ id: f.id });
      }
      accepted.push(f);
      continue;
    }
    const r = verifier.verify(f.data);
    const dup = r.ok && ids.has(r.envelope.event_id);
    if (!r.ok || dup) {
      const fields = r.ok ? { event_type: r.envelope.event_type, event_id: r.envelope.event_id, reason: "duplicate" } : { event_type: r.eventType ?? null, event_id: r.eventId ?? null, reason: r.reason };
      if (dup) verifier.rejected.duplicate++;
      if (fields.reason === "duplicate") logger.debug(fields, "duplicate event dropped");
      else logger.warn({ ...fields, security: true }, "signed event rejected");
      // A duplicate's nonce is durable too: after a restart this very frame is then refused by
      // its nonce, also once its id has left the recent ids.
      const nonce = r.ok ? { value: r.envelope.nonce, expiresAt: r.issuedAtMs + nonceLifetimeMs } : r.nonce;
      if (nonce !== undefined) records.push({ nonce: nonce.value, expiresAt: nonce.expiresAt });
      continue;
    }
    ids.add(r.envelope.event_id);
    records.push({ id: r.envelope.event_id, nonce: r.envelope.nonce, expiresAt: r.issuedAtMs + nonceLifetimeMs });
    accepted.push({ env: r.envelope, verifiedWith: r.verifiedWith });
  }
  if (records.length === 0 && accepted.length === 0) return;
  try {
    if (records.length > 0) await o.commit?.(records);
  } catch (err) {
    // Not on disk, so not dispatched: a replay after a crash could not be told apart.
    // Their nonces stay recorded in memory; the control plane's replay (fresh nonces)
    // or the next state pull brings what they carried.
    logger.error({ err, events: records.flatMap((r) => (r.id === undefined ? [] : [r.id])) }, "event bookkeeping not durable; events not dispatched");
    o.onCommitFailed?.(err);
    return;
  }
  let oversize = false;
  for (const a of accepted) {
    if ("oversize" in a) {
      if (plausibleId(a.id)) verifier.markHandled(a.id);
      oversize = true;
      continue;
    }
    const env = a.env;
    verifier.markHandled(env.event_id);
    try {
      // Handlers are mostly synchronous store writes: no microtask turn unless one is async.
      const p = o.dispatch(env, a.verifiedWith);
      if (p !== undefined) await p;
      verifier.dispatched++;
      o.onDispatched?.();
    } catch (err) {
      // Handled at most once: the id is on disk already. What the handler did not do
      // arrives with the next state pull (handlers only write the desired state).
      if (!signal.aborted || !isAbortError(err)) logger.error({ err, event_type: env.event_type, event_id: env.event_id }, "event handler failed");
    }
  }
  if (oversize) o.onOversize?.();
}
