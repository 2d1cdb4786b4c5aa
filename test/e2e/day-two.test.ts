import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { parse, stringify } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { grpcHealthCheck } from "../support/grpc-health-probe.js";
import { schemaViolations } from "../support/json-schema.js";
import { createTopology, ensureSystemUsers, nsExec, ping, registerCleanup, useHarness, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { continuousPing, joinNode, meshIp, nodeId } from "./lib/mesh.js";
import type { PlexdNode } from "./lib/node.js";

// Day-two operations against live agents in namespaces: reload without restart (SIGHUP and
// `plexd reload`), health for supervisors (curl, a grpc-js health probe, status --check),
// the status document against its schema, and deregistration through the running agent.

useHarness();

const statusSchema = resolve(import.meta.dirname, "../../docs/schema/status.schema.json");
let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let api: string;
let a: PlexdNode;
let b: PlexdNode;

const allowAll = (x: PlexdNode, y: PlexdNode) => [
  { src: nodeId(x), dst: nodeId(y), port: 0, protocol: "", action: "allow" },
  { src: nodeId(y), dst: nodeId(x), port: 0, protocol: "", action: "allow" },
];

function editConfig(n: PlexdNode, edit: (c: Record<string, unknown>) => void): void {
  const c = parse(readFileSync(n.configFile, "utf8")) as Record<string, unknown>;
  edit(c);
  writeFileSync(n.configFile, stringify(c));
}

/** Restores a node's config file (and the running agent's configuration) as the test found them. */
function keepConfig(n: PlexdNode): void {
  const original = readFileSync(n.configFile, "utf8");
  registerCleanup(`config of ${n.name}`, async () => {
    writeFileSync(n.configFile, original);
    if (n.agent?.exited === false) await n.plexd(["reload"]);
  });
}

const statusJson = async (n: PlexdNode) => {
  const r = await n.plexd(["status", "-o", "json"]);
  expect(r.exitCode, r.output).toBe(0);
  return JSON.parse(r.output) as Record<string, unknown> & { log_level: string; health_status: string };
};

const statePulls = async (n: PlexdNode, since: number) =>
  (await cp.client.requests({ path: `/v1/nodes/${nodeId(n)}/state`, method: "GET" })).map((r) => Date.parse(r.time)).filter((t) => t > since);

beforeAll(async () => {
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["dt1", "dt2", "dt3"] });
  cp = await startCpOnHub(topo, { stun: true });
  api = `https://${topo.hub.ip}:${cpPort}`;
  // A long reconcile interval, so a reload to a short one is plain to see in mockcp's request log.
  const config = { reconcile: { interval: "60s" } };
  a = await joinNode({ topo, cp, api, users, name: "dt1", config });
  b = await joinNode({ topo, cp, api, users, name: "dt2", config });
  for (const n of [a, b]) await cp.client.setPolicies(nodeId(n), [{ id: "p1", rules: allowAll(a, b) }]);
  const end = Date.now() + 60_000;
  while (!(await ping(a.ns, meshIp(b), { count: 1, timeoutMs: 3000 })).ok) {
    if (Date.now() > end) throw new Error("no ping across the mesh within 60 s");
  }
});

describe("reload without restart", () => {
  it("SIGHUP applies a changed log_level and reconcile interval at once, reports restart-only keys, and no tunnel notices", async () => {
    keepConfig(a);
    const agent = a.agent!;
    const running = continuousPing(a, meshIp(b));
    // At info, handled events are not logged (debug).
    const before = await cp.client.setNodeState(nodeId(a), { metadata: { step: "before" } });
    await expect.poll(async () => (await statusJson(a)).log_level).toBe("info");
    editConfig(a, (c) => {
      c.log_level = "debug";
      c.reconcile = { interval: "10s" };
      c.mesh = { ...(c.mesh as object), listen_port: 51999 };
    });
    const hupAt = Date.now();
    const reloadedAt = agent.output().length;
    agent.signal("SIGHUP");
    await expect.poll(() => agent.output().slice(reloadedAt).includes('"msg":"configuration reloaded"'), { timeout: 10_000 }).toBe(true);
    const line = agent.output().slice(reloadedAt).split("\n").find((l) => l.includes('"msg":"configuration reloaded"'))!;
    expect(JSON.parse(line)).toMatchObject({ trigger: "SIGHUP", applied: ["log_level", "reconcile.interval"], restart_required: ["mesh.listen_port"] });

    // The level reached loggers made before the reload (the event channel's).
    expect((await statusJson(a)).log_level).toBe("debug");
    const after = await cp.client.setNodeState(nodeId(a), { metadata: { step: "after" } });
    await expect.poll(() => agent.output().includes(`"event_id":"${after.event_id}"`), { timeout: 10_000 }).toBe(true);
    expect(agent.output()).not.toContain(`"event_id":"${before.event_id}","outcome"`);

    // The new interval runs from the reload on: state pulls every ~10 s instead of every 60 s.
    await expect.poll(async () => (await statePulls(a, hupAt)).length, { timeout: 40_000, interval: 1000 }).toBeGreaterThanOrEqual(3);
    const pulls = await statePulls(a, hupAt);
    for (let i = 1; i < pulls.length; i++) expect(pulls[i]! - pulls[i - 1]!).toBeLessThan(20_000);

    // The restart-only key kept its running value: the tunnel still listens where it did.
    expect((await nsExec(a.ns, ["wg", "show", a.iface, "listen-port"])).stdout.trim()).toBe("51820");
    const { sent, received } = await running.stop();
    expect(sent).toBeGreaterThan(50);
    expect(received).toBeGreaterThanOrEqual(sent - 3);
    expect(agent.exited).toBe(false);
  });

  it("a broken file changes nothing: SIGHUP logs the key path and plexd reload exits 2 with the same message", async () => {
    keepConfig(a);
    const agent = a.agent!;
    const level = (await statusJson(a)).log_level;
    editConfig(a, (c) => {
      c.log_level = level === "debug" ? "info" : "debug";
      c.reconcile = { interval: "5s" };
    });
    const from = agent.output().length;
    agent.signal("SIGHUP");
    await expect.poll(() => agent.output().slice(from).includes("configuration not reloaded"), { timeout: 10_000 }).toBe(true);
    const logged = JSON.parse(agent.output().slice(from).split("\n").find((l) => l.includes("configuration not reloaded"))!) as { msg: string; issues: string[] };
    expect(logged.issues).toEqual(["reconcile.interval"]);
    expect(logged.msg).toMatch(/reconcile\.interval: /);
    expect((await statusJson(a)).log_level).toBe(level);

    const r = await a.plexd(["reload"]);
    expect(r.exitCode).toBe(2);
    expect(r.output).toContain(logged.msg);

    // Fixed, `plexd reload` applies it and says what applied.
    editConfig(a, (c) => {
      c.reconcile = { interval: "60s" };
    });
    const ok = await a.plexd(["reload", "-o", "json"]);
    expect(ok.exitCode, ok.output).toBe(0);
    expect(JSON.parse(ok.output)).toMatchObject({ applied: expect.arrayContaining(["log_level"]) as string[] });
    expect((await statusJson(a)).log_level).not.toBe(level);
    // The node API changes the level too, without touching the file.
    expect((await a.plexd(["log-level", "warn"])).exitCode).toBe(0);
    expect((await statusJson(a)).log_level).toBe("warn");
    expect((await a.plexd(["log-level", "loud"])).exitCode).toBe(2);
  });
});

describe("health for supervisors and scripts", () => {
  it("curl /v1/health and a grpc-js health probe answer; status --check exits 1 while privhelper is stopped", async () => {
    const curlHealth = async () => {
      const r = await nsExec(a.ns, ["curl", "-sS", "-w", "\n%{http_code}", "--unix-socket", a.apiSocket, "http://localhost/v1/health"]);
      const [body, code] = r.stdout.split("\n");
      return { code: Number(code), body: JSON.parse(body ?? "{}") as { status: string; conditions: { code: string }[] } };
    };
    await expect.poll(async () => (await curlHealth()).code, { timeout: 20_000 }).toBe(200);
    expect(await grpcHealthCheck(a.apiSocket)).toBe("SERVING");
    expect((await a.plexd(["status", "--check"])).exitCode).toBe(0);

    // The status document of a live node, peers and all, against the shipped schema.
    const doc = await a.plexd(["status", "-o", "json"]);
    expect(await schemaViolations(statusSchema, doc.output)).toEqual([]);
    const parsed = JSON.parse(doc.output) as { self: { node_id: string }; peers: { peer_id: string; mesh_ip: string; handshake_age_seconds?: number }[] };
    expect(parsed.self.node_id).toBe(nodeId(a));
    expect(parsed.peers.find((p) => p.peer_id === nodeId(b))).toMatchObject({ mesh_ip: meshIp(b), handshake_age_seconds: expect.any(Number) as number });

    await a.privhelper!.kill("SIGTERM");
    registerCleanup("privhelper of dt1 back", async () => {
      if (a.privhelper?.exited) await a.startPrivhelper();
    });
    await expect.poll(async () => (await a.plexd(["status", "--check"])).exitCode, { timeout: 30_000, interval: 1000 }).toBe(1);
    expect((await a.plexd(["status"])).exitCode).toBe(0);
    const down = await curlHealth();
    expect(down.code).toBe(503);
    expect(down.body.conditions.map((c) => c.code)).toContain("privhelper_unavailable");
    expect(await grpcHealthCheck(a.apiSocket)).toBe("NOT_SERVING");

    await a.startPrivhelper();
    await expect.poll(async () => (await a.plexd(["status", "--check"])).exitCode, { timeout: 60_000, interval: 1000 }).toBe(0);
    expect(await grpcHealthCheck(a.apiSocket)).toBe("SERVING");
  });
});

describe("deregistration through the running agent", () => {
  it("plexd deregister --purge as root: node gone at mockcp, interface and rules gone, agent exited, nothing back 10 s later", async () => {
    const c = await joinNode({ topo, cp, api, users, name: "dt3" });
    const id = nodeId(c);
    await expect.poll(async () => (await nsExec(c.ns, ["nft", "list", "table", "inet", "plexd"], { reject: false })).exitCode, { timeout: 30_000 }).toBe(0);

    const r = await c.plexd(["deregister", "--purge"], { asRoot: true });
    expect(r.exitCode, r.output).toBe(0);
    expect(r.output).toContain(`deregistered node ${id}`);
    // The agent did it (the offline path would have stopped nothing): it exits by itself.
    expect((await c.agent!.waitForExit(20_000)).exitCode).toBe(0);
    expect(c.agent!.output()).toContain('"msg":"deregistered; stopped"');
    expect((await cp.client.listNodes()).find((n) => n.id === id)?.status).toBe("deregistered");

    const gone = async () => ({
      link: (await nsExec(c.ns, ["ip", "-o", "link", "show"])).stdout.includes(c.iface),
      table: (await nsExec(c.ns, ["nft", "list", "table", "inet", "plexd"], { reject: false })).exitCode === 0,
      dataDir: readdirSync(c.dataDir),
    });
    expect(await gone()).toEqual({ link: false, table: false, dataDir: [] });
    await new Promise((res) => setTimeout(res, 10_000));
    expect(await gone()).toEqual({ link: false, table: false, dataDir: [] });
  });
});
