import http from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createLogger } from "../util/log.js";
import { FakeClock } from "../util/clock.js";
import { Backoff } from "./backoff.js";
import { EnvelopeVerifier, type Envelope } from "./envelope.js";
import { nodeSigner, publicKeyB64FromSeed, seedRange, signEnvelope, sseFrame } from "../../test/support/envelope-testkit.js";
import { runEventStream, type EventStreamState, type OpenStream, type RunEventStreamOptions, type StreamSink } from "./event-stream.js";
import { ReplayGuard } from "./replay.js";
import type { JournalRecord } from "./replay-journal.js";
import { TrustedSigningKeys } from "./signing-keys.js";
import { openEventStream, type StreamResult } from "./sse.js";

// TV-9 (reconnect timing, fallback, identity loss) and the Last-Event-ID part of TV-8.

const T0 = Date.parse("2025-01-15T10:30:00Z");
const sign1 = nodeSigner(seedRange(0));
const sign2 = nodeSigner(seedRange(0x20));
const k1 = publicKeyB64FromSeed(seedRange(0));

function logCapture() {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split("\n")) if (l.trim() !== "") lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { lines, logger: createLogger({ name: "test", level: "debug", destination }) };
}

type Step = StreamResult | ((sink: StreamSink) => Promise<StreamResult>);

function harness(script: (attempt: number) => Step, over: Partial<RunEventStreamOptions> = {}) {
  const clock = new FakeClock(T0);
  const ac = new AbortController();
  const opens: Array<{ at: number; lastEventId: string | undefined }> = [];
  const polls: number[] = [];
  const states: EventStreamState[] = [];
  const dispatched: Envelope[] = [];
  let connected = 0;
  const identityLost: number[] = [];
  const replay = new ReplayGuard();
  const verifier = new EnvelopeVerifier({ keys: TrustedSigningKeys.fromCurrent(k1), replay, now: () => clock.now() });
  const { lines, logger } = logCapture();
  const open: OpenStream = async (lastEventId, sink) => {
    opens.push({ at: (clock.now() - T0) / 1000, lastEventId });
    const step = script(opens.length - 1);
    return typeof step === "function" ? step(sink) : step;
  };
  const done = runEventStream({
    open,
    verifier,
    dispatch: (e) => {
      dispatched.push(e);
    },
    clock,
    backoff: new Backoff({ jitter: 0 }),
    signal: ac.signal,
    logger,
    onConnected: () => connected++,
    onIdentityLost: (s) => identityLost.push(s),
    poll: async () => {
      polls.push((clock.now() - T0) / 1000);
    },
    onState: (s) => states.push(s),
    ...over,
  });
  return {
    clock,
    ac,
    opens,
    polls,
    states,
    dispatched,
    identityLost,
    verifier,
    replay,
    lines,
    done,
    get connected() {
      return connected;
    },
    /** Fires pending sleeps until `n` attempts were made. */
    async until(n: number) {
      while (opens.length < n) {
        await clock.waitForSleepers(1);
        await clock.runNext();
      }
    },
  };
}

const fail503: StreamResult = { status: 503, end: "http_status" };
const connectThenEnd = async (sink: StreamSink): Promise<StreamResult> => {
  sink.onOpen();
  return { status: 200, end: "ended" };
};

let seq = 0;
function event(over: Partial<Envelope> = {}, signer = sign1, at = T0): string {
  seq++;
  return JSON.stringify(
    signEnvelope(
      { event_type: "peer_removed", event_id: `e${seq}`, issued_at: new Date(at).toISOString(), nonce: `nonce-${seq}`, payload: { peer_id: "p" }, ...over },
      signer,
    ),
  );
}

describe("TV-9 reconnect timing", () => {
  it("transient failures back off 1, 2, 4, 8, 16, 32, 60, 60 s without jitter", async () => {
    const h = harness(() => fail503);
    await h.until(9);
    h.ac.abort();
    expect(await h.done).toEqual({ reason: "aborted" });
    expect(h.clock.sleepLog.slice(0, 8)).toEqual([1, 2, 4, 8, 16, 32, 60, 60].map((s) => s * 1000));
    expect(h.opens.map((o) => o.at)).toEqual([0, 1, 3, 7, 15, 31, 63, 123, 183]);
    expect(h.states.at(-1)).toMatchObject({ stopped: "aborted", reconnects: 8, lastFailure: "http 503" });
  });

  it("every network, idle, timeout and end class is transient", async () => {
    const ends: StreamResult[] = [
      { status: 0, end: "network_error" },
      { status: 0, end: "request_timeout" },
      { status: 200, end: "idle_timeout" },
      { status: 200, end: "ended" },
      { status: 200, end: "bad_content_type" },
      { status: 500, end: "http_status" },
      { status: 400, end: "http_status" },
    ];
    const h = harness((i) => ends[i] ?? fail503);
    await h.until(ends.length + 1);
    h.ac.abort();
    await h.done;
    expect(h.clock.sleepLog.slice(0, ends.length)).toEqual([1, 2, 4, 8, 16, 32, 60].map((s) => s * 1000));
    expect(h.identityLost).toEqual([]);
  });

  it("with jitter on, every delay is within ±25 % of the schedule", async () => {
    let x = 42;
    const random = () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const h = harness(() => fail503, { backoff: new Backoff({ random }) });
    await h.until(9);
    h.ac.abort();
    await h.done;
    const bases = [1, 2, 4, 8, 16, 32, 60, 60];
    const delays = h.clock.sleepLog.slice(0, 8);
    delays.forEach((d, i) => {
      expect(d).toBeGreaterThanOrEqual((bases[i] as number) * 750);
      expect(d).toBeLessThanOrEqual((bases[i] as number) * 1250);
    });
    expect(new Set(delays.map((d, i) => d / ((bases[i] as number) * 1000))).size).toBeGreaterThan(1);
  });

  it("429 waits Retry-After (7 s) without advancing the backoff; without the header it uses the backoff", async () => {
    const script: StreamResult[] = [fail503, { status: 429, end: "http_status", retryAfterSec: 7 }, { status: 429, end: "http_status" }, fail503];
    const h = harness((i) => script[i] ?? fail503);
    await h.until(5);
    h.ac.abort();
    await h.done;
    expect(h.clock.sleepLog.slice(0, 4)).toEqual([1000, 7000, 2000, 4000]);
  });

  it.each([401, 404] as const)("%d invokes identity loss once and does not retry", async (status) => {
    const h = harness(() => ({ status, end: "http_status" }));
    expect(await h.done).toEqual({ reason: "identity_lost", status });
    expect(h.identityLost).toEqual([status]);
    expect(h.opens.length).toBe(1);
    expect(h.clock.pending).toBe(0);
    expect(h.states.at(-1)).toMatchObject({ stopped: "identity_lost", connected: false });
  });

  it("403 stops the stream without identity loss", async () => {
    const h = harness(() => ({ status: 403, end: "http_status" }));
    expect(await h.done).toEqual({ reason: "forbidden" });
    expect(h.identityLost).toEqual([]);
    expect(h.opens.length).toBe(1);
  });

  it("after 5 min of failures polls every 60 s, trying the stream once after each poll, and leaves polling on the first 200", async () => {
    const successAt = 14;
    const h = harness((i) => (i === successAt ? connectThenEnd : fail503));
    await h.until(successAt + 2);
    h.ac.abort();
    await h.done;
    expect(h.opens.map((o) => o.at)).toEqual([0, 1, 3, 7, 15, 31, 63, 123, 183, 243, 303, 303, 363, 423, 483, 484]);
    expect(h.polls).toEqual([303, 363, 423, 483]);
    expect(h.connected).toBe(1);
    // Polling ended with the connect; the drop after it backs off from 1 s again.
    const connectedState = h.states.find((s) => s.connected);
    expect(connectedState).toMatchObject({ polling: false, reconnectingSince: null });
    expect(h.states.some((s) => s.polling)).toBe(true);
    expect(h.clock.sleepLog.slice(-2)).toEqual([1000, 2000]);
  });

  it("triggers exactly one onConnected per successful connect and resets the backoff on 200", async () => {
    const script: Step[] = [fail503, fail503, fail503, connectThenEnd, fail503, connectThenEnd, connectThenEnd, fail503];
    const h = harness((i) => script[i] ?? fail503);
    await h.until(script.length + 1);
    h.ac.abort();
    await h.done;
    expect(h.connected).toBe(3);
    expect(h.clock.sleepLog.slice(0, 8)).toEqual([1000, 2000, 4000, 1000, 2000, 1000, 1000, 2000]);
  });

  it("stops promptly when aborted during a backoff sleep", async () => {
    const h = harness(() => fail503);
    await h.clock.waitForSleepers(1);
    h.ac.abort();
    expect(await h.done).toEqual({ reason: "aborted" });
    expect(h.clock.pending).toBe(0);
  });
});

describe("verify → dispatch → Last-Event-ID", () => {
  it("sends the id of the last handled event; rejected events do not move it, a failed handler does (at most once)", async () => {
    const e1 = event({ event_id: "e-ok-1" });
    const e2 = event({ event_id: "e-ok-2" });
    const forged = event({ event_id: "e-forged" }, sign2);
    const failing = event({ event_id: "e-handler-fails", event_type: "policy_updated" });
    const script: Step[] = [
      async (sink) => {
        sink.onOpen();
        for (const d of [e1, e2, forged, failing, e1, "not json"]) await sink.onEvents([{ data: d, id: undefined }]);
        return { status: 200, end: "network_error" };
      },
      fail503,
    ];
    const h = harness((i) => script[i] ?? fail503, {
      dispatch: (e) => {
        if (e.event_type === "policy_updated") throw new Error("handler broke");
      },
    });
    await h.until(2);
    h.ac.abort();
    await h.done;
    expect(h.opens.map((o) => o.lastEventId)).toEqual([undefined, "e-handler-fails"]);
    expect(h.verifier.rejected).toMatchObject({ bad_signature: 1, replay: 1, malformed: 1, duplicate: 0 });
    const warns = h.lines.filter((l) => l.level === 40 && l.msg === "signed event rejected");
    expect(warns.map((w) => [w.event_id, w.event_type, w.reason])).toEqual([
      ["e-forged", "peer_removed", "bad_signature"],
      ["e-ok-1", "peer_removed", "replay"],
      [null, null, "malformed"],
    ]);
    expect(h.lines.filter((l) => l.msg === "event handler failed").map((l) => l.event_id)).toEqual(["e-handler-fails"]);
    expect(h.states.some((s) => s.lastEventAt !== null)).toBe(true);
  });

  it("drops a duplicate quietly (debug) and dispatches once, across batches and within one", async () => {
    const [a, b, c] = [event({ event_id: "dup" }), event({ event_id: "dup" }), event({ event_id: "dup2" })];
    const d = event({ event_id: "dup2" });
    const commits: JournalRecord[][] = [];
    const h = harness(
      (i) =>
        i === 0
          ? async (sink) => {
              sink.onOpen();
              await sink.onEvents([{ data: a, id: "dup" }]);
              await sink.onEvents([{ data: b, id: "dup" }]);
              await sink.onEvents([
                { data: c, id: "dup2" },
                { data: d, id: "dup2" },
              ]);
              return { status: 200, end: "ended" };
            }
          : fail503,
      { commit: async (r) => void commits.push(r) },
    );
    await h.until(2);
    h.ac.abort();
    await h.done;
    expect(h.dispatched.map((e) => e.event_id)).toEqual(["dup", "dup2"]);
    expect(h.lines.filter((l) => l.reason === "duplicate").map((l) => l.level)).toEqual([20, 20]);
    // What is dispatched is journaled, and the nonce of each duplicate (its id is known already).
    expect(commits.map((r) => r.map((x) => x.id ?? `nonce ${x.nonce === undefined ? "missing" : "only"}`))).toEqual([["dup"], ["nonce only"], ["dup2", "nonce only"]]);
  });

  it("journals a batch in one commit before dispatching any of it; a failed commit dispatches nothing", async () => {
    const evs = [1, 2, 3].map((n) => event({ event_id: `b${n}` }));
    const order: string[] = [];
    let fail = false;
    const h = harness(
      (i) =>
        i === 0
          ? async (sink) => {
              sink.onOpen();
              await sink.onEvents(evs.map((data) => ({ data, id: undefined })));
              fail = true;
              await sink.onEvents([{ data: event({ event_id: "b4" }), id: undefined }]);
              return { status: 200, end: "ended" };
            }
          : fail503,
      {
        commit: async (records) => {
          order.push(`commit ${records.map((r) => r.id).join(",")}`);
          if (records.some((r) => r.nonce === undefined || typeof r.expiresAt !== "number")) throw new Error("record without nonce");
          if (fail) throw new Error("disk full");
        },
        dispatch: (e) => void order.push(`dispatch ${e.event_id}`),
      },
    );
    await h.until(2);
    h.ac.abort();
    await h.done;
    expect(order).toEqual(["commit b1,b2,b3", "dispatch b1", "dispatch b2", "dispatch b3", "commit b4"]);
    expect(h.lines.some((l) => l.msg === "event bookkeeping not durable; events not dispatched")).toBe(true);
    expect(h.opens[1]!.lastEventId).toBe("b3");
  });

  it("an oversize event is recorded as handled by its id, and a state pull follows", async () => {
    let pulls = 0;
    const commits: JournalRecord[][] = [];
    const h = harness(
      (i) =>
        i === 0
          ? async (sink) => {
              sink.onOpen();
              await sink.onEvents([
                { data: event({ event_id: "before" }), id: "before" },
                { oversize: 5_000_000, id: "huge" },
                { oversize: 5_000_000, id: undefined },
              ]);
              return { status: 200, end: "ended" };
            }
          : fail503,
      { onOversize: () => pulls++, commit: async (r) => void commits.push(r) },
    );
    await h.until(2);
    h.ac.abort();
    await h.done;
    expect(commits).toEqual([[expect.objectContaining({ id: "before" }), { id: "huge" }]]);
    expect(h.opens[1]!.lastEventId).toBe("huge");
    expect(h.verifier.rejected.oversize).toBe(2);
    expect(pulls).toBe(1);
    expect(h.lines.filter((l) => l.reason === "oversize").map((l) => [l.event_id, l.level])).toEqual([
      ["huge", 40],
      [null, 40],
    ]);
  });
});

describe("with the real SSE client (TV-8 Last-Event-ID)", () => {
  let server: http.Server | undefined;
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
  });

  it("reconnects with Last-Event-ID = last dispatched event over HTTP", async () => {
    const seenIds: Array<string | undefined> = [];
    const frames = [event({ event_id: "h1" }), event({ event_id: "h2" }), event({ event_id: "h3-forged" }, sign2)].map(
      (d) => sseFrame(JSON.parse(d) as Envelope),
    );
    server = http.createServer((req, res) => {
      seenIds.push(req.headers["last-event-id"] as string | undefined);
      res.writeHead(200, { "Content-Type": "text/event-stream" });
      if (seenIds.length === 1) res.end(`: keepalive\n${frames.join("")}`);
      else res.write(": keepalive\n");
    });
    await new Promise<void>((r) => server?.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/nodes/n1/events`;
    const h = harness(() => fail503, {
      open: (lastEventId, sink, signal) =>
        openEventStream({ url, lastEventId, idleTimeoutMs: 5000, requestTimeoutMs: 5000, signal, onOpen: sink.onOpen, onEvents: sink.onEvents, onComment: sink.onComment }),
    });
    await h.clock.waitForSleepers(1);
    await h.clock.runNext();
    // Real sockets: on a loaded machine the reconnect can take seconds, so wait for it rather than a fixed number of ticks.
    await vi.waitFor(() => expect(seenIds.length).toBeGreaterThanOrEqual(2), { timeout: 20_000, interval: 5 });
    h.ac.abort();
    expect(await h.done).toEqual({ reason: "aborted" });
    expect(seenIds).toEqual([undefined, "h2"]);
    expect(h.dispatched.map((e) => e.event_id)).toEqual(["h1", "h2"]);
    expect(h.connected).toBe(2);
  });
});
