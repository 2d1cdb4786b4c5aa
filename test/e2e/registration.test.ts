import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { createTopology, ensureSystemUsers, useHarness, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { createNode, identityFilesPresent } from "./lib/node.js";

// Registration end to end: mockcp with TLS on the underlay (hub namespace), the agent as
// user plexd in its own namespace, a real privhelper beside it.

useHarness();

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let api: string;

beforeAll(async () => {
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["a", "b", "c", "d", "e"] });
  cp = await startCpOnHub(topo);
  api = `https://${topo.hub.ip}:${cpPort}`;
});

const registerCount = async (): Promise<number> => (await cp.client.requests({ path: "/v1/register" })).filter((r) => r.status === 201).length;

describe("registration", () => {
  it("registers once over TLS, keeps the identity private, removes the token, and does not register again on restart", async () => {
    const { token } = await cp.client.createToken();
    const n = createNode({ name: "a", ns: topo.node("a").ns, api, caFile: cp.caFile, users, token });
    await n.startPrivhelper();
    const agent = n.startAgent();
    await agent.waitForLine(/"msg":"registered"/, 30_000);
    const nodes = await cp.client.listNodes();
    const me = nodes.find((x) => x.hostname === "a");
    expect(me).toBeDefined();
    expect(me?.mesh_ip).toMatch(/^10\.100\./);

    expect((statSync(n.dataDir).mode & 0o777).toString(8)).toBe("700");
    expect(identityFilesPresent(n.dataDir)).toHaveLength(5);
    for (const f of identityFilesPresent(n.dataDir)) {
      const st = statSync(join(n.dataDir, f));
      expect({ f, mode: (st.mode & 0o777).toString(8), uid: st.uid }).toEqual({ f, mode: "600", uid: users.plexd.uid });
    }
    expect(JSON.parse(readFileSync(join(n.dataDir, "identity.json"), "utf8"))).toEqual({ node_id: me?.id, mesh_ip: me?.mesh_ip });
    await expect.poll(() => existsSync(n.tokenFile), { timeout: 10_000 }).toBe(false);
    // The token never reaches a log line.
    expect(agent.output()).not.toContain(token);

    const before = await registerCount();
    expect((await agent.kill("SIGTERM")).exitCode).toBe(0);
    const again = n.startAgent();
    await again.waitForLine(/identity loaded; not registering again/, 30_000);
    expect(await registerCount()).toBe(before);
    // Identity from disk: the capabilities (binary checksum) are announced instead (docs/architecture.md#lifecycle phase 7).
    await expect.poll(async () => (await cp.client.requests({ path: `/v1/nodes/${me?.id ?? ""}/capabilities` })).length, { timeout: 20_000 }).toBeGreaterThan(0);
    expect((await cp.client.listNodes()).filter((x) => x.hostname === "a")).toHaveLength(1);
    expect((await again.kill("SIGTERM")).exitCode).toBe(0);
  });

  it("an invalid token ends with a clear message and exit code 1, persisting nothing", async () => {
    const n = createNode({ name: "b", ns: topo.node("b").ns, api, caFile: cp.caFile, users, token: "not-a-real-token" });
    const agent = n.startAgent();
    const exit = await agent.waitForExit(30_000);
    expect(exit.exitCode).toBe(1);
    expect(agent.output()).toMatch(/bootstrap token is invalid, expired or already used/);
    expect(identityFilesPresent(n.dataDir)).toEqual([]);
    expect(existsSync(n.tokenFile)).toBe(true);
  });

  it("mockcp rejects an expired token", async () => {
    const { token } = await cp.client.createToken({ ttlSeconds: 1 });
    await new Promise((r) => setTimeout(r, 1500));
    const n = createNode({ name: "c", ns: topo.node("c").ns, api, caFile: cp.caFile, users, token });
    const r = await n.plexd(["join"]);
    expect(r.exitCode).toBe(1);
    expect(r.output).toMatch(/invalid, expired or already used/);
    expect(identityFilesPresent(n.dataDir)).toEqual([]);
  });

  it("mockcp rejects a reused token", async () => {
    const { token } = await cp.client.createToken();
    const first = createNode({ name: "d", ns: topo.node("d").ns, api, caFile: cp.caFile, users, token });
    const ok = await first.plexd(["join", "-o", "json"]);
    expect(ok.exitCode).toBe(0);
    expect(ok.output).toMatch(/"registered":true/);
    const second = createNode({ name: "e", ns: topo.node("e").ns, api, caFile: cp.caFile, users, token });
    const r = await second.plexd(["join"]);
    expect(r.exitCode).toBe(1);
    expect(r.output).toMatch(/invalid, expired or already used/);
    expect(identityFilesPresent(second.dataDir)).toEqual([]);
  });

  it("refuses a control plane whose certificate it cannot verify", async () => {
    const { token } = await cp.client.createToken();
    const n = createNode({ name: "e", ns: topo.node("e").ns, api, caFile: "", users, token, config: { control_plane: { ca_file: "" }, registration: { hostname: "e2", max_retry_duration: "10s" } } });
    const r = await n.plexd(["join"], { timeoutMs: 60_000 });
    expect(r.exitCode).toBe(1);
    expect(r.output).toMatch(/certificate|self-signed|unable to verify/i);
  });
});
