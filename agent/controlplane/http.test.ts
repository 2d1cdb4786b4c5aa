// The control-plane client over a kept-alive loopback connection.
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createCpClient } from "./http.js";

let server: http.Server | undefined;
afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

describe("control-plane HTTP client", () => {
  it("reuses one connection for many requests without piling listeners on it", async () => {
    const sockets = new Set<Socket>();
    server = http.createServer((req, res) => {
      sockets.add(req.socket);
      res.setHeader("Content-Type", "application/json");
      res.end(JSON.stringify({ path: req.url }));
    });
    await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    const cp = createCpClient({ baseUrl: `http://127.0.0.1:${port}`, connectTimeoutMs: 2000, requestTimeoutMs: 2000 });
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on("warning", onWarning);
    try {
      for (let i = 0; i < 30; i++) {
        const r = await cp.request<{ path: string }>({ method: "GET", path: `/v1/ping?i=${i}` });
        expect(r.body.path).toBe(`/v1/ping?i=${i}`);
      }
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off("warning", onWarning);
    }
    expect(sockets.size).toBe(1);
    expect(warnings).not.toContain("MaxListenersExceededWarning");
    const clientSocket = Object.values(cp.agentFor().freeSockets).flat()[0];
    expect(clientSocket?.listenerCount("connect") ?? 0).toBeLessThanOrEqual(1);
    cp.agentFor().destroy();
  });

  it("a request started with an aborted signal ends as cancelled, and nothing escapes as an uncaught error", async () => {
    server = http.createServer((_req, res) => res.end("{}"));
    await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    const cp = createCpClient({ baseUrl: `http://127.0.0.1:${port}`, connectTimeoutMs: 2000, requestTimeoutMs: 2000 });
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    // vitest reports uncaught errors itself; this listener makes the test name the failure.
    process.prependListener("uncaughtException", onUncaught);
    try {
      await expect(cp.request({ method: "GET", path: "/v1/ping", signal: AbortSignal.abort() })).rejects.toMatchObject({ code: "cancelled" });
      await new Promise((r) => setTimeout(r, 100)); // the destroyed request's 'error' comes a tick later
    } finally {
      process.off("uncaughtException", onUncaught);
      cp.agentFor().destroy();
    }
    expect(uncaught).toEqual([]);
  });
});
