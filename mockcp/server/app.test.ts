import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import https from "node:https";
import { connect } from "node:net";
import type { TLSSocket } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { MockcpClient } from "../control/client.js";
import { createMockcp, type Mockcp, type MockcpOptions } from "../mockcp.js";

const running: Mockcp[] = [];
const tempDirs: string[] = [];

afterEach(async () => {
  await Promise.all(running.splice(0).map((m) => m.stop()));
  await Promise.all(tempDirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function start(opts: MockcpOptions = {}): Promise<{ cp: Mockcp; client: MockcpClient }> {
  const cp = createMockcp(opts);
  running.push(cp);
  await cp.start();
  const url = cp.urls.find((u) => u.startsWith("http://"));
  const client = url !== undefined ? new MockcpClient({ baseUrl: url }) : new MockcpClient({ socketPath: (cp.urls[0] ?? "").slice(5) });
  return { cp, client };
}

const pubkey = (): string => randomBytes(32).toString("base64");

interface Registered {
  node_id: string;
  mesh_ip: string;
  identity_token: string;
  signing_public_key: string;
  node_secret_key: string;
  peers: { id: string; public_key: string; mesh_ip: string; endpoint: string; allowed_ips: string[]; psk: string }[];
}

async function register(client: MockcpClient, hostname: string, publicKey = pubkey()): Promise<Registered> {
  const { token } = await client.createToken();
  const r = await client.request<Registered>("POST", "/v1/register", { body: { token, public_key: publicKey, hostname } });
  expect(r.status).toBe(201);
  return r.body;
}

describe("POST /v1/register (TV-11)", () => {
  it("returns 201 with every field, then 401 for the same token", async () => {
    const { cp, client } = await start();
    const { token, expires_at } = await client.createToken();
    expect(Date.parse(expires_at) - Date.now()).toBeGreaterThan(590_000);
    const key = pubkey();
    const body = { token, public_key: key, hostname: "alpha", metadata: { os: "linux" }, capabilities: { builtin_actions: [], hooks: [] } };
    const r = await client.request<Registered>("POST", "/v1/register", { body, headers: { authorization: "Bearer ignored" } });
    expect(r.status).toBe(201);
    expect(r.body.node_id).toMatch(/^n_[0-9a-f]+$/);
    expect(r.body.mesh_ip).toBe("10.100.1.1");
    expect(r.body.identity_token.length).toBeGreaterThan(20);
    expect(r.body.identity_token.length).toBeLessThanOrEqual(512);
    expect(r.body.signing_public_key).toBe(cp.signingPublicKey());
    expect(Buffer.from(r.body.node_secret_key, "base64")).toHaveLength(32);
    expect(r.body.peers).toEqual([]);

    const again = await client.request<{ error: string; message: string }>("POST", "/v1/register", { body: { ...body, hostname: "beta" } });
    expect(again.status).toBe(401);
    expect(again.body.error).toBe("invalid_token");
    expect(typeof again.body.message).toBe("string");

    const nodes = await client.listNodes();
    expect(nodes).toHaveLength(1);
    expect(nodes[0]).toMatchObject({ id: r.body.node_id, hostname: "alpha", mesh_ip: "10.100.1.1", public_key: key, status: "registered" });
  });

  it("gives 409 hostname_conflict for a duplicate hostname and keeps the token usable", async () => {
    const { client } = await start();
    await register(client, "alpha");
    const { token } = await client.createToken();
    const dup = await client.request<{ error: string }>("POST", "/v1/register", { body: { token, public_key: pubkey(), hostname: "alpha" } });
    expect(dup.status).toBe(409);
    expect(dup.body.error).toBe("hostname_conflict");
    const ok = await client.request("POST", "/v1/register", { body: { token, public_key: pubkey(), hostname: "gamma" } });
    expect(ok.status).toBe(201);
  });

  it("gives 400 for a 31-byte public key, a missing field, or a non-JSON body, without using the token", async () => {
    const { client } = await start();
    const { token } = await client.createToken();
    const short = await client.request<{ error: string }>("POST", "/v1/register", { body: { token, public_key: randomBytes(31).toString("base64"), hostname: "a" } });
    expect(short.status).toBe(400);
    expect(short.body.error).toBe("bad_request");
    const missing = await client.request("POST", "/v1/register", { body: { token, public_key: pubkey() } });
    expect(missing.status).toBe(400);
    const garbage = await client.request<{ error: string }>("POST", "/v1/register", { rawBody: "{nope", headers: { "content-type": "application/json" } });
    expect(garbage.status).toBe(400);
    expect(garbage.body.error).toBe("invalid_json");
    expect((await client.request("POST", "/v1/register", { body: { token, public_key: pubkey(), hostname: "a" } })).status).toBe(201);
  });

  it("gives 401 for an unknown or expired token", async () => {
    let now = Date.parse("2025-01-15T10:00:00Z");
    const { client } = await start({ now: () => now });
    const { token } = await client.createToken({ ttlSeconds: 60 });
    expect((await client.request("POST", "/v1/register", { body: { token: "nope", public_key: pubkey(), hostname: "a" } })).status).toBe(401);
    now += 61_000;
    const r = await client.request<{ error: string }>("POST", "/v1/register", { body: { token, public_key: pubkey(), hostname: "a" } });
    expect(r.status).toBe(401);
    expect(r.body.error).toBe("invalid_token");
  });

  it("honours multi-use tokens and a caller-chosen token value", async () => {
    const { client } = await start();
    await client.createToken({ token: "fleet token 1", uses: 2 });
    for (const h of ["a", "b"]) {
      expect((await client.request("POST", "/v1/register", { body: { token: "fleet token 1", public_key: pubkey(), hostname: h } })).status).toBe(201);
    }
    expect((await client.request("POST", "/v1/register", { body: { token: "fleet token 1", public_key: pubkey(), hostname: "c" } })).status).toBe(401);
  });

  it("allocates unique mesh IPs and lists earlier nodes as peers", async () => {
    const { client } = await start();
    const a = await register(client, "a");
    const b = await register(client, "b");
    expect(b.mesh_ip).toBe("10.100.1.2");
    expect(b.peers).toHaveLength(1);
    expect(b.peers[0]).toMatchObject({ id: a.node_id, mesh_ip: a.mesh_ip, endpoint: "", allowed_ips: [`${a.mesh_ip}/32`] });
    expect(Buffer.from(b.peers[0]?.psk ?? "", "base64")).toHaveLength(32);
  });

  it("accepts a gzip-compressed body", async () => {
    const { client } = await start();
    const { token } = await client.createToken();
    const r = await client.request<Registered>("POST", "/v1/register", { body: { token, public_key: pubkey(), hostname: "zipped" }, gzip: true });
    expect(r.status).toBe(201);
    const logged = await client.requests({ path: "/v1/register" });
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ method: "POST", status: 201, node_id: null, body: { hostname: "zipped" } });
    expect(logged[0]?.headers["content-encoding"]).toBe("gzip");
  });

  it("answers 413 when the body (or its decompressed form) exceeds the cap", async () => {
    const { client } = await start({ maxBodyBytes: 4096 });
    const big = { token: "x", public_key: pubkey(), hostname: "h", metadata: { pad: "a".repeat(10_000) } };
    const plain = await client.request<{ error: string }>("POST", "/v1/register", { body: big });
    expect(plain.status).toBe(413);
    expect(plain.body.error).toBe("body_too_large");
    // Compresses to far below 4 KiB on the wire; only the decompressed size is over.
    const zipped = await client.request("POST", "/v1/register", { body: big, gzip: true });
    expect(zipped.status).toBe(413);
  });
});

describe("node-scoped paths", () => {
  it("checks 404 for an unknown node before 401 for a wrong token", async () => {
    const { client } = await start();
    const a = await register(client, "a");
    const unknown = await client.request<{ error: string }>("GET", "/v1/nodes/n_nope/state", { token: "whatever" });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toBe("node_not_found");
    const wrong = await client.request<{ error: string }>("GET", `/v1/nodes/${a.node_id}/state`, { token: "not-the-token" });
    expect(wrong.status).toBe(401);
    expect(wrong.body.error).toBe("unauthorized");
    expect((await client.request("GET", `/v1/nodes/${a.node_id}/state`)).status).toBe(401);
    const ok = await client.request("GET", `/v1/nodes/${a.node_id}/state`, { token: a.identity_token });
    expect(ok.status).toBe(200);
    // Another node's valid token is still the wrong token for this node.
    const b = await register(client, "b");
    expect((await client.request("GET", `/v1/nodes/${a.node_id}/state`, { token: b.identity_token })).status).toBe(401);
  });

  it("serves ping, JSON 404 for unknown routes and 405 for wrong methods", async () => {
    const { client } = await start();
    const ping = await client.request("GET", "/v1/ping");
    expect(ping.status).toBe(200);
    expect(ping.body).toEqual({});
    const nf = await client.request<{ error: string; message: string }>("GET", "/v1/nothing");
    expect(nf.status).toBe(404);
    expect(nf.body.error).toBe("not_found");
    expect((await client.request<{ error: string }>("GET", "/v1/register")).status).toBe(405);
  });
});

describe("listeners", () => {
  it("answers 400 to a request target that is not a URL and keeps serving", async () => {
    const { cp, client } = await start();
    const { hostname, port } = new URL(cp.urls[0] ?? "");
    const reply = await new Promise<string>((resolve, reject) => {
      const sock = connect({ host: hostname, port: Number(port) }, () => sock.end("GET //[ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
      let text = "";
      sock.setEncoding("utf8").on("data", (d: string) => (text += d));
      sock.on("end", () => resolve(text)).on("error", reject);
    });
    expect(reply).toMatch(/^HTTP\/1\.1 400 /);
    await client.ping();
  });

  it("serves HTTPS with a server certificate signed by the generated CA", async () => {
    const stateDir = await mkdtemp(join(tmpdir(), "mockcp-test-"));
    tempDirs.push(stateDir);
    const { cp } = await start({ listen: ["https://127.0.0.1:0"], stateDir, tlsSans: ["cp.test"] });
    expect(cp.caFile).toBe(join(stateDir, "ca.pem"));
    expect((await stat(cp.caFile ?? "")).mode & 0o777).toBe(0o644);
    const ca = await readFile(cp.caFile ?? "");
    const client = new MockcpClient({ baseUrl: cp.urls[0] ?? "", ca });
    await client.ping();
    // Also by name: "localhost" is a SAN, and so is the extra --tls-san.
    const port = new URL(cp.urls[0] ?? "").port;
    await new MockcpClient({ baseUrl: `https://localhost:${port}`, ca }).ping();
    const cert = await new Promise<{ subjectaltname?: string }>((resolve, reject) => {
      const req = https.get({ host: "127.0.0.1", port, path: "/v1/ping", ca, servername: "cp.test" }, (res) => {
        resolve((res.socket as TLSSocket).getPeerCertificate());
        res.resume();
      });
      req.on("error", reject);
    });
    expect(cert.subjectaltname).toContain("DNS:cp.test");
    expect(cert.subjectaltname).toContain("IP Address:127.0.0.1");
    // Without the CA the certificate must not be trusted.
    await expect(new MockcpClient({ baseUrl: cp.urls[0] ?? "" }).ping()).rejects.toThrow();
  });

  it("reuses the CA of a kept state dir across restarts", async () => {
    const stateDir = await mkdtemp(join(tmpdir(), "mockcp-test-"));
    tempDirs.push(stateDir);
    const first = await start({ listen: ["https://127.0.0.1:0"], stateDir });
    const ca1 = await readFile(first.cp.caFile ?? "", "utf8");
    await first.cp.stop();
    const second = await start({ listen: ["https://127.0.0.1:0"], stateDir });
    expect(await readFile(second.cp.caFile ?? "", "utf8")).toBe(ca1);
    await new MockcpClient({ baseUrl: second.cp.urls[0] ?? "", ca: ca1 }).ping();
  });

  it("serves the same app on a unix socket and removes the socket on stop", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mockcp-test-"));
    tempDirs.push(dir);
    const sock = join(dir, "cp.sock");
    const { cp } = await start({ listen: ["http://127.0.0.1:0", `unix:${sock}`] });
    expect(cp.urls[1]).toBe(`unix:${sock}`);
    const viaSock = new MockcpClient({ socketPath: sock });
    await viaSock.ping();
    const { token } = await viaSock.createToken();
    const tcp = new MockcpClient({ baseUrl: cp.urls[0] ?? "" });
    expect((await tcp.request("POST", "/v1/register", { body: { token, public_key: pubkey(), hostname: "u" } })).status).toBe(201);
    expect(await viaSock.listNodes()).toHaveLength(1);
    await cp.stop();
    await expect(stat(sock)).rejects.toThrow();
  });

  it("removes a temp state dir it created", async () => {
    const { cp } = await start({ ca: "always" });
    const dir = cp.stateDir;
    expect((await stat(join(dir, "ca.pem"))).isFile()).toBe(true);
    await cp.stop();
    await expect(stat(dir)).rejects.toThrow();
  });

  it("rejects bad listen specs", () => {
    expect(() => createMockcp({ listen: ["ftp://x:1"] })).toThrow(/scheme/);
    expect(() => createMockcp({ listen: ["unix:relative.sock"] })).toThrow(/absolute/);
  });
});
