import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { createTopology, ensureSystemUsers, nsExec, useHarness, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { linesWith } from "./lib/logs.js";
import { createNode, identityFilesPresent, type PlexdNode } from "./lib/node.js";

// The signed event stream end to end: real mockcp (TLS, hub namespace) signing events, the
// agent as user plexd in its namespace, a real privhelper beside it.

useHarness();

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let api: string;

beforeAll(async () => {
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["a", "b", "c"] });
  cp = await startCpOnHub(topo, { keepalive: "2s" });
  api = `https://${topo.hub.ip}:${cpPort}`;
});

async function startedNode(name: string): Promise<{ node: PlexdNode; id: string }> {
  const { token } = await cp.client.createToken();
  const node = createNode({ name, ns: topo.node(name).ns, api, caFile: cp.caFile, users, token, logLevel: "debug", config: { heartbeat: { interval: "5s" } } });
  await node.startPrivhelper();
  const agent = node.startAgent();
  await agent.waitForLine(/"msg":"event stream connected"/, 30_000);
  const id = JSON.parse(readFileSync(join(node.dataDir, "identity.json"), "utf8")).node_id as string;
  return { node, id };
}

/** Changes the node's metadata at mockcp and pushes node_state_updated, so events and state pulls agree. */
async function setEnv(id: string, env: string): Promise<{ event_id: string }> {
  const r = await cp.client.setNodeState(id, { metadata: { env } });
  if (r.event_id === null) throw new Error("mockcp pushed no event");
  return { event_id: r.event_id };
}

const handled = (node: PlexdNode, eventId: string) => linesWith(node.agent?.output() ?? "", "event handled", { event_id: eventId });
const desired = (node: PlexdNode) => JSON.parse(readFileSync(join(node.dataDir, "cache", "desired.json"), "utf8")) as { metadata: Record<string, string> };

describe("signed event stream", () => {
  it("handles events, rejects every bad envelope, recovers missed events exactly once, survives restarts and key rotation", async () => {
    const { node, id } = await startedNode("a");
    const agent = () => node.agent!;

    // A pushed event is handled and reaches the desired-state store.
    const e1 = await setEnv(id, "e2e");
    await expect.poll(() => handled(node, e1.event_id).length, { timeout: 10_000 }).toBe(1);
    await expect.poll(() => (existsSync(join(node.dataDir, "cache", "desired.json")) ? desired(node).metadata.env : undefined), { timeout: 5000 }).toBe("e2e");

    // Every bad kind is rejected, counted and logged once; none is acted on.
    const kinds = ["wrong_key", "tampered_payload", "stale", "future", "reused_nonce", "malformed_json", "oversize", "missing_field"] as const;
    const reason: Record<(typeof kinds)[number], string> = {
      wrong_key: "bad_signature",
      tampered_payload: "bad_signature",
      stale: "stale",
      future: "future",
      reused_nonce: "replay",
      malformed_json: "malformed",
      oversize: "malformed",
      missing_field: "malformed",
    };
    for (const kind of kinds) {
      await cp.client.pushBadEvent(id, { kind, event_type: "node_state_updated", payload: { metadata: { env: `bad-${kind}` } } });
    }
    const dup = await cp.client.pushBadEvent(id, { kind: "duplicate_id" });
    for (const kind of kinds) {
      await expect.poll(() => linesWith(agent().output(), "signed event rejected", { reason: reason[kind] }).length, { timeout: 10_000 }).toBeGreaterThan(0);
    }
    await expect.poll(() => agent().output().includes('"msg":"duplicate event dropped"'), { timeout: 10_000 }).toBe(true);
    expect(dup.event_id).toBe(e1.event_id);
    expect(handled(node, e1.event_id)).toHaveLength(1);
    const rejected = linesWith(agent().output(), "signed event rejected");
    expect(rejected).toHaveLength(kinds.length);
    await expect.poll(() => desired(node).metadata.env, { timeout: 5000 }).toBe("e2e");
    // Counted, and visible as a health condition.
    await expect.poll(() => agent().output().includes("signed events rejected since start"), { timeout: 5000 }).toBe(true);

    // Drop the stream; events pushed while it is down arrive exactly once, after Last-Event-ID.
    await cp.client.dropStreams(id, "destroy");
    const missed = [];
    for (let i = 0; i < 3; i++) missed.push(await setEnv(id, `missed-${i}`));
    for (const m of missed) await expect.poll(() => handled(node, m.event_id).length, { timeout: 15_000 }).toBe(1);
    // The store is persisted asynchronously (coalesced writes).
    await expect.poll(() => desired(node).metadata.env, { timeout: 5000 }).toBe("missed-2");
    const reconnects = await cp.client.requests({ path: `/v1/nodes/${id}/events` });
    expect(reconnects.length).toBeGreaterThanOrEqual(2);

    // Restart: nothing handled twice, and the stream resumes from the persisted cursor.
    expect((await agent().kill("SIGTERM")).exitCode).toBe(0);
    const restartedAt = Date.now();
    node.startAgent();
    await agent().waitForLine(/"msg":"event stream connected"/, 30_000);
    const after = await setEnv(id, "after-restart");
    await expect.poll(() => handled(node, after.event_id).length, { timeout: 10_000 }).toBe(1);
    for (const m of [e1, ...missed]) expect(handled(node, m.event_id)).toHaveLength(0);

    // Signing-key rotation with a short overlap: K2 accepted at once, K1 accepted during the
    // overlap and rejected after it.
    const validFrom = new Date(Date.now() + 2000).toISOString();
    await cp.client.rotateSigningKey({ transition_period: "6s", valid_from: validFrom, force: true });
    await expect.poll(() => agent().output().includes('"msg":"signing key rotated"'), { timeout: 10_000 }).toBe(true);
    await cp.client.setNodeState(id, { metadata: { env: "k1-during" }, push: false });
    const oldDuring = await cp.client.pushBadEvent(id, { kind: "previous_key", event_type: "node_state_updated", payload: { metadata: { env: "k1-during" } } });
    await expect.poll(() => desired(node).metadata.env, { timeout: 10_000 }).toBe("k1-during");
    expect(oldDuring.delivered).toBe(1);
    await new Promise((r) => setTimeout(r, Date.parse(validFrom) - Date.now() + 200));
    const k2 = await setEnv(id, "k2");
    await expect.poll(() => handled(node, k2.event_id).length, { timeout: 10_000 }).toBe(1);
    await new Promise((r) => setTimeout(r, Date.parse(validFrom) + 6000 - Date.now() + 500));
    const before = linesWith(agent().output(), "signed event rejected", { reason: "bad_signature" }).length;
    await cp.client.pushBadEvent(id, { kind: "previous_key", event_type: "node_state_updated", payload: { metadata: { env: "k1-after" } } });
    await expect.poll(() => linesWith(agent().output(), "signed event rejected", { reason: "bad_signature" }).length, { timeout: 10_000 }).toBe(before + 1);
    expect(desired(node).metadata.env).toBe("k2");

    // Heartbeats arrive at the configured interval (5 s).
    // Only this agent process's beats: the restart above started a fresh schedule.
    const beatsSinceRestart = async () => (await cp.client.heartbeats(id)).filter((b) => Date.parse(b.received_at) > restartedAt);
    await expect.poll(async () => (await beatsSinceRestart()).length, { timeout: 20_000 }).toBeGreaterThanOrEqual(3);
    const times = (await beatsSinceRestart()).map((b) => Date.parse(b.received_at));
    const gaps = times.slice(1).map((t, i) => t - (times[i] ?? 0));
    for (const g of gaps) {
      expect(g).toBeGreaterThan(4000);
      expect(g).toBeLessThan(6500);
    }

    // SIGTERM: clean exit 0 within a bounded time, no deregistration.
    const t0 = Date.now();
    expect((await agent().kill("SIGTERM", { graceMs: 10_000 })).exitCode).toBe(0);
    expect(Date.now() - t0).toBeLessThan(8000);
    expect(await cp.client.requests({ path: `/v1/nodes/${id}/deregister` })).toHaveLength(0);
    expect((await cp.client.listNodes()).find((n) => n.id === id)?.status).not.toBe("deregistered");
  });

  it("plexd deregister --purge removes the node at mockcp and its identity locally", async () => {
    const { node, id } = await startedNode("b");
    expect((await node.agent!.kill("SIGTERM")).exitCode).toBe(0);
    const r = await node.plexd(["deregister", "--purge"]);
    expect(r.exitCode, r.output).toBe(0);
    expect(r.output).toContain(`deregistered node ${id}`);
    expect(identityFilesPresent(node.dataDir)).toEqual([]);
    expect(readdirSync(node.dataDir)).toEqual([]);
    const nodes = await cp.client.listNodes();
    expect(nodes.find((n) => n.id === id && n.status !== "deregistered")).toBeUndefined();
  });

  it("plexd deregister --purge beside a running agent goes through it: the agent stops and recreates nothing in data_dir", async () => {
    const { node, id } = await startedNode("c");
    // The agent has event bookkeeping to write: cache/events.json is there before the purge.
    const e = await setEnv(id, "before-purge");
    await expect.poll(() => handled(node, e.event_id).length, { timeout: 10_000 }).toBe(1);
    await expect.poll(() => existsSync(join(node.dataDir, "cache", "events.json")), { timeout: 10_000 }).toBe(true);

    const r = await node.plexd(["deregister", "--purge"]);
    expect(r.exitCode, r.output).toBe(0);
    expect(r.output).toContain(`deregistered node ${id}`);
    // The running agent did it (AgentService.Deregister): it stops by itself and says why.
    const exit = await node.agent!.waitForExit(15_000);
    expect(exit.exitCode).toBe(0);
    expect(node.agent!.output()).toContain('"msg":"deregistered; stopped"');
    // A few seconds on, nothing of plexd is back in data_dir, and no mesh interface either.
    await new Promise((res) => setTimeout(res, 3000));
    expect(readdirSync(node.dataDir)).toEqual([]);
    expect((await nsExec(node.ns, ["ip", "-o", "link", "show"])).stdout).not.toContain(node.iface);
    expect((await cp.client.listNodes()).find((n) => n.id === id)?.status).toBe("deregistered");
  });
});
