import type { Logger } from "pino";
import { isAbortError, type Clock } from "../util/clock.js";
import type { Backoff } from "./backoff.js";
import type { Envelope, EnvelopeVerifier } from "./envelope.js";
import type { StreamResult } from "./sse.js";

// The event-stream supervisor (spec/control-plane.md 4.6, spec/node-agent.md 3.4): connect,
// verify and dispatch, reconnect with backoff, fall back to polling after 5 minutes without a
// connection, and stop on identity loss (401/404) or 403. It knows nothing about HTTP: `open`
// is one connection attempt (normally openEventStream bound to the node's URL and token).

export interface StreamSink {
  /** The attempt got 200 + text/event-stream. */
  onOpen(): void;
  onEvent(data: string, id: string | undefined): Promise<void>;
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
  /** Bookkeeping (nonces, recent ids, Last-Event-ID) changed; the caller coalesces writes. */
  persist?: () => void;
}

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
    async onEvent(data) {
      const r = verifier.verify(data);
      if (!r.ok) {
        const fields = { event_type: r.eventType ?? null, event_id: r.eventId ?? null, reason: r.reason };
        if (r.reason === "duplicate") {
          // The nonce was recorded (step 5 comes first), so the bookkeeping did change.
          logger.debug(fields, "duplicate event dropped");
          o.persist?.();
        } else {
          logger.warn({ ...fields, security: true }, "signed event rejected");
        }
        return;
      }
      const env = r.envelope;
      try {
        await o.dispatch(env, r.verifiedWith);
        verifier.markDispatched(env.event_id);
        state.lastEventAt = clock.now();
        emit();
      } catch (err) {
        // Not marked as dispatched: Last-Event-ID does not move past it, and a replay with a
        // fresh nonce will be handled again (handlers are idempotent).
        if (!signal.aborted || !isAbortError(err)) logger.error({ err, event_type: env.event_type, event_id: env.event_id }, "event handler failed");
      }
      o.persist?.();
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
      onEvent: sink.onEvent,
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
