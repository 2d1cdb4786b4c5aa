// The control plane's TLS settings: the configured CA trusted beside Node's roots, through one
// context that requests (over a fresh connection each time here) and streams share.
import https from "node:https";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCpClient } from "./http.js";
import { cpTlsOptions } from "./tls.js";

let dir: string;
let cert: Buffer;
let server: https.Server;
let port: number;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "plexd-cp-tls-"));
  await execa("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
    "-subj", "/CN=plexd-test", "-addext", "subjectAltName=IP:127.0.0.1",
    "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"),
  ]);
  cert = await readFile(join(dir, "cert.pem"));
  server = https.createServer({ cert, key: await readFile(join(dir, "key.pem")) }, (req, res) => {
    res.setHeader("Content-Type", "application/json");
    // No keep-alive: every request below opens its own TLS connection.
    res.setHeader("Connection", "close");
    res.end(JSON.stringify({ path: req.url }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  await rm(dir, { recursive: true, force: true });
});

describe("control-plane TLS", () => {
  it("builds one context per CA bundle, and none without one", () => {
    const a = cpTlsOptions(cert);
    expect("secureContext" in a).toBe(true);
    expect(cpTlsOptions(cert.toString())).toEqual(a);
    expect(cpTlsOptions(undefined)).toEqual({ minVersion: "TLSv1.2" });
  });

  it("trusts the configured CA on every new connection, and only with it", async () => {
    const cp = createCpClient({ baseUrl: `https://127.0.0.1:${port}`, ca: cert, connectTimeoutMs: 2000, requestTimeoutMs: 2000 });
    for (let i = 0; i < 3; i++) expect((await cp.request<{ path: string }>({ method: "GET", path: `/v1/ping?i=${i}` })).body.path).toBe(`/v1/ping?i=${i}`);
    const stranger = createCpClient({ baseUrl: `https://127.0.0.1:${port}`, connectTimeoutMs: 2000, requestTimeoutMs: 2000 });
    await expect(stranger.request({ method: "GET", path: "/v1/ping" })).rejects.toThrow();
    cp.agentFor().destroy();
    stranger.agentFor().destroy();
  });
});
