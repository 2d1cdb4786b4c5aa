import { gunzipSync, gzipSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { Backoff } from "../controlplane/backoff.js";
import { createPipeline, type Pipeline, type PipelineOptions, type SendResult } from "./delivery.js";

interface Sent {
  items: unknown[];
  count: number;
}

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((a, b) => {
    resolve = a;
    reject = b;
  });
  return { promise, resolve, reject };
}

const open: Pipeline<unknown>[] = [];
afterEach(async () => {
  for (const p of open.splice(0)) await p.close();
});

/** A pipeline whose send answers with `answer` (202 by default) and records every body. */
function make(over: Partial<PipelineOptions<number>> & { answer?: (items: unknown[]) => SendResult | Promise<SendResult> } = {}) {
  const sent: Sent[] = [];
  const answer = over.answer ?? (() => ({ status: 202 }));
  const p = createPipeline<number>({
    name: "metrics",
    batchIntervalMs: 60_000,
    batchMaxSize: 100,
    bufferSize: 1000,
    format: "json-array",
    encode: (n) => JSON.stringify({ n }),
    compress: async (b) => gzipSync(b),
    backoff: new Backoff({ jitter: 0 }),
    closeTimeoutMs: 500,
    ...over,
    send: async (body, count) => {
      const text = gunzipSync(body).toString();
      const items = (over.format ?? "json-array") === "json-array" ? (JSON.parse(text) as unknown[]) : text.trimEnd().split("\n").map((l) => JSON.parse(l) as unknown);
      expect(items).toHaveLength(count);
      sent.push({ items, count });
      return answer(items);
    },
  });
  open.push(p as Pipeline<unknown>);
  return { p, sent };
}

const ns = (s: Sent[]): number[] => s.flatMap((b) => b.items.map((i) => (i as { n: number }).n));

describe("delivery pipeline", () => {
  it("numbers entries, sends them gzipped as one JSON array and commits on 202", async () => {
    const { p, sent } = make();
    const committed: number[] = [];
    p.onCommitted((s) => committed.push(s));
    expect([p.push(10), p.push(11), p.push(12)]).toEqual([1, 2, 3]);
    expect(p.counters().buffered).toBe(3);
    await p.flush();
    expect(ns(sent)).toEqual([10, 11, 12]);
    expect(committed).toEqual([3]);
    const c = p.counters();
    expect(c).toMatchObject({ buffered: 0, sent_total: 3, sent_batches_total: 1, committed_seq: 3, last_flush_outcome: "ok", dropped_overflow_total: 0 });
    expect(c.last_success_at).toBe(c.last_flush_at);
    await p.flush();
    expect(sent).toHaveLength(1); // an empty buffer sends nothing
  });

  it("frames NDJSON bodies and stops a batch before the body cap", async () => {
    const { p, sent } = make({ format: "ndjson", maxBodyBytes: 40 });
    for (let i = 0; i < 5; i++) p.push(i); // each entry is 8 bytes + newline
    await p.flush();
    expect(sent.map((s) => s.count)).toEqual([4, 1]);
    expect(ns(sent)).toEqual([0, 1, 2, 3, 4]);
  });

  it("evicts the oldest entry when full and counts it; the newest data wins", async () => {
    const { p, sent } = make({ bufferSize: 5, batchMaxSize: 5 });
    // batch-full trigger would send at 5; hold the sender so the ring overflows
    const gate = deferred<SendResult>();
    const { p: q, sent: qs } = make({ bufferSize: 5, batchMaxSize: 5, answer: () => gate.promise });
    for (let i = 1; i <= 8; i++) p.push(i);
    await p.flush();
    expect(p.counters().dropped_overflow_total).toBe(0); // the batch-full trigger sent 1..5 before 6 came
    expect(ns(sent)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    for (let i = 1; i <= 12; i++) q.push(i); // 1..5 in flight, 6..12 evict 1..5 and 6..7
    expect(q.counters().buffered).toBe(5);
    gate.resolve({ status: 503 });
    await q.flush().catch(() => undefined);
    // 1..5 were in flight when evicted: counted only once their batch failed
    expect(q.counters().dropped_overflow_total).toBe(7);
    expect(qs[0]?.count).toBe(5);
  });

  it("counts entries evicted while their batch is in flight as delivered when it commits", async () => {
    const gate = deferred<SendResult>();
    let calls = 0;
    const { p, sent } = make({ bufferSize: 4, batchMaxSize: 4, answer: () => (++calls === 1 ? gate.promise : { status: 202 }) });
    for (let i = 1; i <= 6; i++) p.push(i); // 1..4 go out; 5, 6 evict 1, 2
    gate.resolve({ status: 202 });
    await p.flush();
    expect(ns(sent)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(p.counters()).toMatchObject({ dropped_overflow_total: 0, sent_total: 6, buffered: 0 });
  });

  it("sends when batch_max_size entries are unsent, keeping one request in flight", async () => {
    let inFlight = 0;
    let most = 0;
    const { p, sent } = make({
      batchMaxSize: 3,
      answer: async () => {
        most = Math.max(most, ++inFlight);
        await new Promise((r) => setTimeout(r, 5));
        inFlight--;
        return { status: 202 };
      },
    });
    for (let i = 0; i < 10; i++) p.push(i);
    await p.flush();
    expect(ns(sent)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(sent[0]?.count).toBe(3);
    expect(most).toBe(1);
  });

  it("sends on the batch interval without a flush", async () => {
    const { p, sent } = make({ batchIntervalMs: 20 });
    p.push(1);
    await new Promise((r) => setTimeout(r, 80));
    expect(ns(sent)).toEqual([1]);
  });

  it("halves a batch on 413 and retries each half; a lone entry still refused is dropped", async () => {
    const { p, sent } = make({ answer: (items) => (items.length > 2 || items.some((i) => (i as { n: number }).n === 13) ? { status: 413 } : { status: 202 }) });
    for (let i = 10; i < 18; i++) p.push(i);
    await p.flush();
    expect(sent.map((s) => s.count)).toEqual([8, 4, 2, 2, 1, 1, 4, 2, 2]);
    expect(p.counters()).toMatchObject({ sent_total: 7, dropped_oversize_total: 1, buffered: 0, send_errors_total: 0 });
    // after the split the next batch is full size again
    for (let i = 0; i < 2; i++) p.push(i);
    await p.flush();
    expect(sent.at(-1)?.count).toBe(2);
  });

  it("honours Retry-After on 429 and then resumes by itself", async () => {
    let calls = 0;
    const { p, sent } = make({ answer: () => (++calls === 1 ? { status: 429, retryAfter: "1" } : { status: 202 }) });
    p.push(1);
    const t0 = Date.now();
    await p.flush();
    expect(p.counters()).toMatchObject({ paused: "rate_limited", buffered: 1, send_errors_total: 1, last_flush_outcome: "http 429" });
    await p.flush(); // still paused: nothing sent
    expect(sent).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 1200));
    expect(sent).toHaveLength(2);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
    expect(p.counters()).toMatchObject({ paused: null, buffered: 0, sent_total: 1 });
  });

  it("keeps entries on 5xx and network errors, and retries later", async () => {
    let calls = 0;
    const { p, sent } = make({
      batchMaxSize: 2,
      answer: () => {
        calls++;
        if (calls === 1) return { status: 503, detail: "busy" };
        if (calls === 2) throw new Error("connect ECONNREFUSED");
        return { status: 202 };
      },
    });
    p.push(1);
    p.push(2); // batch full: first attempt, 503
    await new Promise((r) => setTimeout(r, 10));
    p.push(3); // held until the next interval: no hammering a failing control plane
    p.push(4);
    await new Promise((r) => setTimeout(r, 10));
    expect(sent).toHaveLength(1);
    await p.flush(); // network error
    expect(p.counters()).toMatchObject({ buffered: 4, send_errors_total: 2, last_error: "network: connect ECONNREFUSED" });
    await p.flush();
    expect(ns(sent.slice(2))).toEqual([1, 2, 3, 4]);
    expect(p.counters()).toMatchObject({ buffered: 0, sent_total: 4, last_error: "network: connect ECONNREFUSED", last_flush_outcome: "ok" });
  });

  it("pauses on 401 until resume()", async () => {
    let calls = 0;
    let told = 0;
    const { p, sent } = make({ onUnauthorized: () => told++, answer: () => (++calls === 1 ? { status: 401 } : { status: 202 }) });
    p.push(1);
    await p.flush();
    await p.flush();
    expect(sent).toHaveLength(1);
    expect(told).toBe(1);
    expect(p.counters()).toMatchObject({ paused: "unauthorized", buffered: 1 });
    p.resume();
    await p.flush();
    expect(p.counters()).toMatchObject({ paused: null, buffered: 0, sent_total: 1 });
  });

  it("drops a batch the control plane refuses for good (400) and counts it", async () => {
    let calls = 0;
    const { p } = make({ answer: () => (++calls === 1 ? { status: 400, detail: "bad point" } : { status: 202 }) });
    p.push(1);
    p.push(2);
    await p.flush();
    p.push(3);
    await p.flush();
    expect(p.counters()).toMatchObject({ dropped_rejected_total: 2, sent_total: 1, buffered: 0, last_error: "http 400: bad point" });
  });

  it("makes a final flush on close, bounded in time", async () => {
    const { p, sent } = make();
    p.push(1);
    await p.close();
    expect(ns(sent)).toEqual([1]);
    const { p: q } = make({ closeTimeoutMs: 100, answer: () => new Promise<SendResult>(() => undefined) });
    q.push(1);
    const t0 = Date.now();
    await q.close();
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(q.counters().buffered).toBe(1);
  });

  it("keeps memory bounded: a full ring holds buffer_size entries whatever is pushed", async () => {
    const { p } = make({ bufferSize: 100, batchMaxSize: 100, answer: () => new Promise<SendResult>(() => undefined) });
    for (let i = 0; i < 100_000; i++) p.push(i);
    expect(p.counters().buffered).toBe(100);
    // 100 in flight + evicted: 99,800 counted now; the 100 in flight wait for their answer
    expect(p.counters().dropped_overflow_total).toBe(100_000 - 100 - 100);
  });

  it("compresses the next full batch while one is in flight, and not the stale one after a 413 split", async () => {
    const events: string[] = [];
    const first = deferred<SendResult>();
    const answers: (SendResult | Promise<SendResult>)[] = [first.promise, { status: 202 }, { status: 202 }, { status: 202 }, { status: 202 }];
    const firstOf = (raw: Buffer): number => (JSON.parse(raw.toString().split("\n")[0]!) as { n: number }).n;
    const { p, sent } = make({
      format: "ndjson",
      batchMaxSize: 2,
      compress: async (raw) => {
        events.push(`gzip ${firstOf(raw)}`);
        return gzipSync(raw);
      },
      answer: async (items) => {
        const r = await answers.shift()!;
        events.push(`${r.status} ${(items[0] as { n: number }).n}`);
        return r;
      },
    });
    for (let i = 1; i <= 6; i++) p.push(i);
    await new Promise((r) => setTimeout(r, 20));
    // 1-2 in flight; 3-4 already compressed beside it.
    expect(events).toEqual(["gzip 1", "gzip 3"]);
    first.resolve({ status: 413 });
    await p.flush();
    expect(sent.map((b) => b.count)).toEqual([2, 1, 1, 2, 2]);
    expect(ns(sent)).toEqual([1, 2, 1, 2, 3, 4, 5, 6]);
    // After the split the halves go first; 3-4 is taken afresh, and 5-6 is compressed while 3-4 is in flight.
    expect(events).toEqual(["gzip 1", "gzip 3", "413 1", "gzip 1", "202 1", "gzip 2", "202 2", "gzip 3", "gzip 5", "202 3", "202 5"]);
    expect(p.counters()).toMatchObject({ buffered: 0, sent_total: 6, dropped_oversize_total: 0 });
  });

  it("builds a large body in pieces with the same bytes, NDJSON and JSON array alike", async () => {
    for (const format of ["ndjson", "json-array"] as const) {
      const raws: string[] = [];
      const { p, sent } = make({ format, batchMaxSize: 1000, encode: (n) => JSON.stringify({ n, pad: "é✓".repeat(200) }), compress: async (b) => (raws.push(b.toString()), gzipSync(b)) });
      for (let i = 0; i < 400; i++) p.push(i); // about 160 Ki characters: three pieces
      await p.flush();
      expect(ns(sent)).toEqual([...Array(400).keys()]);
      const entries = [...Array(400).keys()].map((n) => JSON.stringify({ n, pad: "é✓".repeat(200) }));
      expect(raws).toEqual([format === "ndjson" ? `${entries.join("\n")}\n` : `[${entries.join(",")}]`]);
    }
  });
});
