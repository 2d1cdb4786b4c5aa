import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { createTopology, ensureSystemUsers, useHarness, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { linesWith } from "./lib/logs.js";
import { createNode } from "./lib/node.js";

// Stream poison (issue 14): a control plane keeps every event for replay,
// a huge one too. The agent skips an event over its size limit, records its id as
// handled-and-rejected and pulls the full state instead; the stream goes on, and the next
// connect's Last-Event-ID is past the huge event, so it is never sent again. Real mockcp (TLS),
// agent as user plexd, privhelper.

useHarness();

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let api: string;

beforeAll(async () => {
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["a"] });
  cp = await startCpOnHub(topo, { keepalive: "2s" });
  api = `https://${topo.hub.ip}:${cpPort}`;
});

/** Over the agent's cap of one event (1 MiB envelope + 4 KiB of SSE lines), under mockcp's 8 MiB body limit. */
const hugePadding = "x".repeat(2 * 1024 * 1024);

describe("an oversize event in the replay history", () => {
  it("is rejected once, followed by a state pull, and does not stop newer events", async () => {
    const { token } = await cp.client.createToken();
    // No timer cycles: a state pull during the test comes from the stream.
    const node = createNode({ name: "a", ns: topo.node("a").ns, api, caFile: cp.caFile, users, token, logLevel: "debug", config: { reconcile: { interval: "10m" } } });
    await node.startPrivhelper();
    let agent = node.startAgent();
    await agent.waitForLine(/"msg":"event stream connected"/, 60_000);
    const id = JSON.parse(readFileSync(join(node.dataDir, "identity.json"), "utf8")).node_id as string;
    const handled = (eventId: string) => linesWith(agent.output(), "event handled", { event_id: eventId }).length;
    const oversize = (eventId: string) => linesWith(agent.output(), "signed event rejected", { reason: "oversize", event_id: eventId }).length;
    const setEnv = async (env: string) => (await cp.client.setNodeState(id, { metadata: { env } })).event_id!;
    const requests = async (path: string) => (await cp.client.requests({ path: `/v1/nodes/${id}/${path}` })).length;
    const huge = async () => (await cp.client.pushEvent(id, { event_type: "node_state_updated", payload: { metadata: { env: "huge" }, padding: hugePadding } })).event_id;

    // Live: the huge event is skipped and a state pull follows; the stream stays up.
    const first = await setEnv("first");
    await expect.poll(() => handled(first), { timeout: 15_000 }).toBe(1);
    const [pullsBefore, connectsBefore] = [await requests("state"), await requests("events")];
    const h1 = await huge();
    await expect.poll(() => oversize(h1), { timeout: 15_000 }).toBe(1);
    await expect.poll(() => requests("state"), { timeout: 15_000 }).toBeGreaterThan(pullsBefore);
    const live = await setEnv("after-live");
    await expect.poll(() => handled(live), { timeout: 15_000 }).toBe(1);
    expect(await requests("events")).toBe(connectsBefore);

    // In the history: while the agent is down the control plane queues a and then the huge one,
    // the last in its history; the agent handles a, skips the huge one and records its id.
    expect((await agent.kill("SIGTERM", { graceMs: 15_000 })).exitCode).toBe(0);
    const a = await setEnv("a");
    const h2 = await huge();
    agent = node.startAgent();
    await expect.poll(() => oversize(h2), { timeout: 30_000 }).toBe(1);
    expect(handled(a)).toBe(1);
    // Each reconnect resumes after the huge event, so it is never sent again, and newer events flow.
    for (let i = 0; i < 3; i++) {
      const connects = await requests("events");
      await cp.client.dropStreams(id, "destroy");
      await expect.poll(() => requests("events"), { timeout: 30_000 }).toBeGreaterThan(connects);
      const resume = (await cp.client.requests({ path: `/v1/nodes/${id}/events` })).at(-1)!;
      if (i === 0) expect(resume.headers["last-event-id"]).toBe(h2);
      // Sent after the reconnect: a resent huge event would have come before it.
      const after = await setEnv(`after-reconnect-${i}`);
      await expect.poll(() => handled(after), { timeout: 15_000 }).toBe(1);
      expect(oversize(h2)).toBe(1);
    }
    expect(linesWith(agent.output(), "signed event rejected", { reason: "oversize" })).toHaveLength(1);
    // Restarted once, reconnected three times: no loop.
    expect(await requests("events")).toBeLessThanOrEqual(connectsBefore + 4);
    expect((await agent.kill("SIGTERM", { graceMs: 15_000 })).exitCode).toBe(0);
  });
});
