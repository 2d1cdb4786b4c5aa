import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeBackend } from "../support/nodeapi-fake-backend.js";
import { startNodeApi, type NodeApiServer } from "../../agent/nodeapi/server.js";
import { NodeState } from "../../agent/nodeapi/state/node-state.js";
import { createLogger } from "../../agent/util/log.js";

// Clients nobody here wrote (docs/testing.md): curl over HTTP/1.1 and HTTP/2 prior knowledge on
// the same socket, and buf curl discovering the services through gRPC reflection.

const repo = resolve(import.meta.dirname, "../..");
const buf = join(repo, "node_modules/.bin/buf");
let dir: string;
let sock: string;
let server: NodeApiServer;
const ac = new AbortController();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "plexd-interop-"));
  sock = join(dir, "api.sock");
  const log = createLogger({ name: "interop", level: "silent" });
  const state = await NodeState.open({ dataDir: dir, nodeId: () => "node_1", cpRequest: async () => ({ status: 404, body: {} }), log });
  await state.applyDownstream({ metadata: { region: "eu" } });
  server = await startNodeApi({ socketPath: sock, backend: new FakeBackend(), state, log, signal: ac.signal, peerCredentials: () => undefined });
});

afterAll(async () => {
  ac.abort();
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

describe("node API with curl and buf curl", () => {
  it("plain curl --unix-socket (HTTP/1.1) reaches the REST routes", async () => {
    const { stdout } = await execa("curl", ["-sS", "--fail-with-body", "--unix-socket", sock, "http://localhost/v1/agent/status"]);
    expect(JSON.parse(stdout)).toMatchObject({ node_id: "node_fake01", phase: "running" });
    const put = await execa("curl", ["-sS", "-i", "-X", "PUT", "--unix-socket", sock, "-H", "If-Match: 0", "--data", '{"payload":{"ok":true}}', "http://localhost/v1/state/report/app"]);
    expect(put.stdout).toMatch(/^HTTP\/1\.1 200/);
    expect(put.stdout).toMatch(/etag: "1"/i);
    const again = await execa("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", "--unix-socket", sock, "-H", "If-Match: 0", "--data", '{"payload":1}', "http://localhost/v1/state/report/app"]);
    expect(again.stdout).toBe("409");
  });

  it("curl --http2-prior-knowledge speaks Connect-JSON on the same socket", async () => {
    const { stdout } = await execa("curl", [
      "-sS",
      "-i",
      "--http2-prior-knowledge",
      "--unix-socket",
      sock,
      "-H",
      "content-type: application/json",
      "--data",
      "{}",
      "http://localhost/plexd.node.v1.NodeStateService/GetMetadata",
    ]);
    expect(stdout).toMatch(/^HTTP\/2 200/);
    expect(stdout.trim().split("\n").at(-1)).toBe('{"metadata":{"region":"eu"}}');
  });

  it("buf curl lists the services through reflection and calls one over gRPC", async () => {
    const list = await execa(buf, ["curl", "--list-methods", "--protocol", "grpc", "--http2-prior-knowledge", "--unix-socket", sock, "http://localhost"]);
    const methods = list.stdout.split("\n");
    expect(methods).toContain("plexd.node.v1.AgentService/GetStatus");
    expect(methods).toContain("plexd.node.v1.NodeStateService/PutReport");
    expect(methods).toContain("grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
    const call = await execa(buf, [
      "curl",
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      "--unix-socket",
      sock,
      "--data",
      '{"all": true}',
      "http://localhost/plexd.node.v1.AgentService/ListPeers",
    ]);
    const peers = (JSON.parse(call.stdout) as { peers: { peerId: string }[] }).peers.map((p) => p.peerId);
    expect(peers).toEqual(["node_alpha", "node_bravo", "node_hidden"]);
    // gRPC-Web through the same listener.
    const web = await execa(buf, ["curl", "--protocol", "grpcweb", "--http2-prior-knowledge", "--unix-socket", sock, "http://localhost/plexd.node.v1.AgentService/GetStatus"]);
    expect(JSON.parse(web.stdout)).toMatchObject({ nodeId: "node_fake01" });
  });
});
