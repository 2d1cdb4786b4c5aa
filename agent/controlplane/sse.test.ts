import http from "node:http";
import https from "node:https";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { execa } from "execa";
import { afterEach, describe, expect, it } from "vitest";
import { openEventStream, type OpenEventStreamOptions, type StreamResult } from "./sse.js";

// TV-8: the SSE client against a real HTTP server on 127.0.0.1:0, in process.

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void | Promise<void>;
const servers: Array<http.Server | https.Server> = [];

async function serve(handler: Handler): Promise<string> {
  // A handler that fails mid-body resets the connection, which the client sees as a broken stream.
  const server = http.createServer((req, res) => {
    Promise.resolve()
      .then(() => handler(req, res))
      .catch((err: unknown) => res.destroy(err instanceof Error ? err : new Error(String(err))));
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/nodes/n1/events`;
}

afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
});

const sseHead = { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" };
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Collected {
  events: Array<{ data: string; id: string | undefined }>;
  oversize: Array<{ oversize: number; id: string | undefined }>;
  batches: number[];
  comments: number;
  opened: number;
  result: StreamResult;
}

type CollectOptions = Partial<OpenEventStreamOptions> & {
  /** Called per event in the batch, in order (awaited); events are collected when it is absent. */
  onEvent?: (data: string, id: string | undefined) => void | Promise<void>;
};

async function collect(url: string, over: CollectOptions = {}): Promise<Collected> {
  const events: Collected["events"] = [];
  const oversize: Collected["oversize"] = [];
  const batches: number[] = [];
  let comments = 0;
  let opened = 0;
  const { onEvent, ...rest } = over;
  const result = await openEventStream({
    url,
    idleTimeoutMs: 2000,
    requestTimeoutMs: 2000,
    signal: AbortSignal.timeout(10_000),
    onEvents: async (frames) => {
      batches.push(frames.length);
      for (const f of frames) {
        if ("oversize" in f) oversize.push(f);
        else if (onEvent) await onEvent(f.data, f.id);
        else events.push({ data: f.data, id: f.id });
      }
    },
    onComment: () => comments++,
    onOpen: () => opened++,
    ...rest,
  });
  return { events, oversize, batches, comments, opened, result };
}

// A stream exercising the framing rules of 4.1 / TV-8; "€" and "ü" make chunk splits land inside
// UTF-8 sequences.
const mixed =
  "\uFEFF: hello\n" +
  "id: e1\nevent: peer_removed\ndata: {\"a\":\"€\"}\n\n" +
  "id: e2\r\ndata:no-space\r\n\r\n" +
  "id: e3\rdata: cr-only\r\r" +
  "data: line one\ndata: line two\n\n" +
  "event: no_data\nid: e5\n\n" +
  "retry: 10\nunknown: field\ndata: after-retry ü\n\n" +
  ": keepalive\n" +
  "data: tail-without-blank-line\n";

const expectedMixed = [
  { data: '{"a":"€"}', id: "e1" },
  { data: "no-space", id: "e2" },
  { data: "cr-only", id: "e3" },
  { data: "line one\nline two", id: undefined },
  { data: "after-retry ü", id: undefined },
];

describe("openEventStream framing (TV-8)", () => {
  it("handles BOM, LF/CRLF/CR, multi-line data, comments, no-data events, retry and EOF", async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, sseHead);
      res.end(mixed);
    });
    const c = await collect(url);
    expect(c.result).toEqual({ status: 200, end: "ended" });
    expect(c.events).toEqual(expectedMixed);
    expect(c.comments).toBe(2);
    expect(c.opened).toBe(1);
  });

  it("gives the same events when the body arrives one byte per write", async () => {
    const bytes = Buffer.from(mixed, "utf8");
    const url = await serve(async (req, res) => {
      req.socket.setNoDelay(true);
      res.writeHead(200, sseHead);
      res.flushHeaders();
      for (const b of bytes) {
        res.write(Buffer.from([b]));
        await delay(1);
      }
      res.end();
    });
    const c = await collect(url);
    expect(c.events).toEqual(expectedMixed);
    expect(c.result.end).toBe("ended");
  });

  it("gives the same events for a split at every byte offset", async () => {
    const bytes = Buffer.from(mixed, "utf8");
    let split = 0;
    const url = await serve(async (req, res) => {
      req.socket.setNoDelay(true);
      const at = Number(new URL(req.url ?? "", "http://x").searchParams.get("at"));
      res.writeHead(200, sseHead);
      res.write(bytes.subarray(0, at));
      await delay(2);
      res.end(bytes.subarray(at));
    });
    for (split = 1; split < bytes.length; split++) {
      const c = await collect(`${url}?at=${split}`);
      expect(c.events, `split at ${split}`).toEqual(expectedMixed);
    }
  });

  it("delivers a last event terminated by CR CR at end of stream, but not one ended by a single CR", async () => {
    const url = await serve((req, res) => {
      res.writeHead(200, sseHead);
      res.end(req.url?.endsWith("single") ? "data: a\r\rdata: b\r" : "data: a\r\rdata: b\r\r");
    });
    expect((await collect(url)).events.map((e) => e.data)).toEqual(["a", "b"]);
    expect((await collect(`${url}?single`)).events.map((e) => e.data)).toEqual(["a"]);
  });

  it("decodes a gzip-encoded stream", async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, { ...sseHead, "Content-Encoding": "gzip" });
      res.end(gzipSync(mixed));
    });
    expect((await collect(url)).events).toEqual(expectedMixed);
  });
});

describe("openEventStream request and timeouts", () => {
  it("sends Accept, Authorization and Last-Event-ID", async () => {
    let seen: http.IncomingHttpHeaders = {};
    const url = await serve((req, res) => {
      seen = req.headers;
      res.writeHead(200, sseHead);
      res.end();
    });
    await collect(url, { lastEventId: "evt_0042", headers: { Authorization: "Bearer tok" } });
    expect(seen.accept).toBe("text/event-stream");
    expect(seen.authorization).toBe("Bearer tok");
    expect(seen["last-event-id"]).toBe("evt_0042");
    await collect(url, { lastEventId: "bad\r\nid" });
    expect(seen["last-event-id"]).toBe(undefined);
  });

  it("comment-only traffic keeps the stream alive; silence then ends it as idle_timeout", async () => {
    const url = await serve(async (_req, res) => {
      res.writeHead(200, sseHead);
      res.flushHeaders();
      for (let i = 0; i < 8; i++) {
        await delay(40);
        res.write(": keepalive\n");
      }
      // then silence, connection left open
    });
    const t0 = Date.now();
    const c = await collect(url, { idleTimeoutMs: 150 });
    expect(c.result).toEqual({ status: 200, end: "idle_timeout" });
    expect(c.comments).toBe(8);
    expect(c.events).toEqual([]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(320 + 140);
  });

  it("reports non-200 status with Retry-After and the body", async () => {
    const url = await serve((req, res) => {
      const code = Number(new URL(req.url ?? "", "http://x").searchParams.get("code"));
      res.writeHead(code, { "Content-Type": "application/json", ...(code === 429 ? { "Retry-After": "7" } : {}) });
      res.end(JSON.stringify({ error: "e", message: "x".repeat(code === 500 ? 10_000 : 1) }));
    });
    expect((await collect(`${url}?code=429`)).result).toEqual({ status: 429, end: "http_status", retryAfterSec: 7, body: '{"error":"e","message":"x"}' });
    const c401 = await collect(`${url}?code=401`);
    expect(c401.result).toMatchObject({ status: 401, end: "http_status" });
    expect(c401.opened).toBe(0);
    expect((await collect(`${url}?code=500`)).result.body?.length).toBe(4096);
  });

  it("rejects a 200 that is not an event stream", async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end("{}");
    });
    const c = await collect(url);
    expect(c.result).toMatchObject({ status: 200, end: "bad_content_type" });
    expect(c.opened).toBe(0);
  });

  it("times out waiting for response headers", async () => {
    const url = await serve(() => {
      /* never answers */
    });
    expect((await collect(url, { requestTimeoutMs: 100 })).result).toEqual({ status: 0, end: "request_timeout" });
  });

  it("classifies a refused connection as network_error", async () => {
    const url = await serve(() => {});
    const s = servers.pop() as http.Server;
    await new Promise((r) => s.close(r));
    expect((await collect(url)).result).toMatchObject({ status: 0, end: "network_error" });
  });

  it("classifies a reset mid-stream as network_error after delivering complete events", async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, sseHead);
      res.write("data: one\n\ndata: partial");
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const c = await collect(url);
    expect(c.events).toEqual([{ data: "one", id: undefined }]);
    expect(c.result).toMatchObject({ status: 200, end: "network_error" });
  });

  it("stops on abort", async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, sseHead);
      res.write("data: one\n\n");
    });
    const ac = new AbortController();
    const c = collect(url, { signal: ac.signal, onEvent: () => ac.abort() });
    expect((await c).result).toEqual({ status: 200, end: "aborted" });
    expect((await collect(url, { signal: AbortSignal.abort() })).result).toEqual({ status: 0, end: "aborted" });
  });

  it("refuses plain http to a non-loopback host without connecting", async () => {
    expect((await collect("http://192.0.2.1/v1/nodes/n1/events")).result).toMatchObject({ status: 0, end: "protocol_error" });
  });

  it("skips an event over the cap, names it by its id, and goes on with the stream", async () => {
    const url = await serve(async (req, res) => {
      req.socket.setNoDelay(true);
      res.writeHead(200, sseHead);
      res.write("data: ok\n\n");
      res.write(`id: huge-1\r\nevent: node_state_updated\r\ndata: ${"x".repeat(3000)}`);
      await delay(5);
      res.write(`${"y".repeat(3000)}\r\n`);
      res.write(`data: ${"z".repeat(3000)}\r\n\r\n`);
      res.end("id: after\ndata: next\n\n");
    });
    const c = await collect(url, { maxEventChars: 1000 });
    expect(c.events).toEqual([
      { data: "ok", id: undefined },
      { data: "next", id: "after" },
    ]);
    expect(c.oversize).toEqual([{ oversize: expect.any(Number) as number, id: "huge-1" }]);
    expect(c.oversize[0]!.oversize).toBeGreaterThan(9000);
    expect(c.result).toEqual({ status: 200, end: "ended" });
  });
});

describe("openEventStream delivery", () => {
  it("hands over the events of one read together", async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, sseHead);
      res.end(Array.from({ length: 50 }, (_, i) => `data: ${i}\n\n`).join(""));
    });
    const c = await collect(url);
    expect(c.events).toHaveLength(50);
    expect(Math.max(...c.batches)).toBe(50);
  });

  it("delivers in order and waits for async handlers, one at a time", async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, sseHead);
      res.end(Array.from({ length: 20 }, (_, i) => `data: ${i}\n\n`).join(""));
    });
    const seen: string[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const c = await collect(url, {
      onEvent: async (data) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await delay(Number(data) % 3);
        seen.push(data);
        inFlight--;
      },
    });
    expect(c.result.end).toBe("ended");
    expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));
    expect(maxInFlight).toBe(1);
  });

  it("queues what arrives while a batch is handled and delivers it as the next batch (one journal write for many)", async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, sseHead);
      res.write("data: first\n\n");
      // Written one by one while the first batch's handler is still busy.
      let i = 0;
      const t = setInterval(() => {
        res.write(`data: ${i}\n\n`);
        if (++i === 10) {
          clearInterval(t);
          setTimeout(() => res.end(), 50);
        }
      }, 5);
    });
    const c = await collect(url, {
      onEvent: async (d) => {
        if (d === "first") await delay(200);
      },
    });
    expect(c.result.end).toBe("ended");
    // The ten that came during the 200 ms handler form one batch.
    expect(c.batches).toEqual([1, 10]);
  });

  it("does not count time spent in a slow handler as server silence", async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, sseHead);
      res.write("data: slow\n\n");
      setTimeout(() => res.end("data: next\n\n"), 10);
    });
    const seen: string[] = [];
    const c = await collect(url, {
      idleTimeoutMs: 50,
      onEvent: async (d) => {
        if (d === "slow") await delay(200);
        seen.push(d);
      },
    });
    expect(seen).toEqual(["slow", "next"]);
    expect(c.result.end).toBe("ended");
  });

  it("ends the stream with handler_error when a handler throws", async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, sseHead);
      res.write("data: a\n\ndata: b\n\n");
    });
    const seen: string[] = [];
    const c = await collect(url, {
      onEvent: (d) => {
        seen.push(d);
        throw new Error("boom");
      },
    });
    expect(seen).toEqual(["a"]);
    expect(c.result).toMatchObject({ status: 200, end: "handler_error", error: expect.objectContaining({ message: "boom" }) });
  });
});

describe("openEventStream over TLS", () => {
  it("trusts the configured CA bundle and refuses a server it cannot verify", async () => {
    const dir = await mkdtemp(join(tmpdir(), "plexd-sse-tls-"));
    try {
      await execa("openssl", [
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
        "-subj", "/CN=plexd-test", "-addext", "subjectAltName=IP:127.0.0.1",
        "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"),
      ]);
      const cert = await readFile(join(dir, "cert.pem"));
      const key = await readFile(join(dir, "key.pem"));
      const server = https.createServer({ cert, key }, (_req, res) => {
        res.writeHead(200, sseHead);
        res.end("data: over-tls\n\n");
      });
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/v1/nodes/n1/events`;
      const good = await collect(url, { ca: cert });
      expect(good.result).toEqual({ status: 200, end: "ended" });
      expect(good.events.map((e) => e.data)).toEqual(["over-tls"]);
      const bad = await collect(url);
      expect(bad.result).toMatchObject({ status: 0, end: "network_error" });
      expect(bad.events).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
