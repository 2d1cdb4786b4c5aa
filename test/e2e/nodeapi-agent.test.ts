import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { createTopology, ensureSystemUsers, makeTempDir, nsExec, ping, run, spawnInNamespace, useHarness, wgShow, type ProcessHandle, type SystemUsers, type Topology, until } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { joinNode, meshIp, nodeId } from "./lib/mesh.js";
import { createNode, distDir, type PlexdNode } from "./lib/node.js";
import { cliAs, curlAs, ensurePeerCredAddon, writeTokenFile } from "./lib/nodeapi.js";

// The node API of a live agent (docs/node-api.md): real mockcp, privhelper and
// agents in namespaces, a two-node mesh, and local users of different groups calling the
// API through the built CLI and curl. What the control plane hands down is readable, what
// the node reports reaches the control plane, secrets are fetched and decrypted per read
// and refused to the wrong callers, and the live tunnel and firewall data come from the kernel.
//
// Every test sets up what it relies on, so any test runs alone or in any order: the first
// describe shares one mesh, made once and re-established before each of its tests; the
// others make their own nodes.

useHarness();

let users: SystemUsers;
const secretValue = `s3cret-${randomBytes(12).toString("hex")}`;
const tcpPort = 9100;

type WatchLine = { kind: string; subject: string; detail: string; at: string };


const json = <T = Record<string, unknown>>(r: { stdout: string }): T => JSON.parse(r.stdout) as T;

/** curl to the node's loopback TCP listener (node_api.http), inside its namespace. */
async function tcpGet(n: PlexdNode, path: string, token?: string): Promise<{ status: number; body: string }> {
  const r = await nsExec(n.ns, ["curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}", ...(token === undefined ? [] : ["-H", `Authorization: Bearer ${token}`]), `http://127.0.0.1:${tcpPort}${path}`], { reject: false });
  const lines = r.stdout.split("\n");
  return { status: Number(lines.pop()), body: lines.join("\n") };
}

beforeAll(async () => {
  await ensurePeerCredAddon();
  users = await ensureSystemUsers();
});

describe("node API of a live agent", () => {
  let topo: Topology;
  let cp: LaunchedMockcp;
  let a: PlexdNode;
  let b: PlexdNode;
  /** `plexd watch -o json` on node a, started before the mesh formed. */
  let watcher: ProcessHandle;
  /** Bearer tokens of node a's loopback TCP listener. */
  const tcpTokens = { reader: randomBytes(16).toString("hex"), secrets: randomBytes(16).toString("hex") };
  let rules: { src: string; dst: string; port: number; protocol: string; action: string }[];

  const watched = (): WatchLine[] =>
    watcher
      .stdout()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as WatchLine);

  beforeAll(async () => {
    topo = await createTopology({ nodes: ["api1", "api2", "api3"] });
    // STUN on the hub: the nodes learn each other's endpoints the way production nodes do.
    cp = await startCpOnHub(topo, { stun: true });
    const api = `https://${topo.hub.ip}:${cpPort}`;
    const config = { node_api: { report_debounce: "1s" } };
    // Token files as docs/decisions.md lays them out, in a root-owned dir: the reader token
    // root:plexd 0640, the secrets token the agent's alone (plexd, 0600).
    const tokenDir = makeTempDir("api-tokens", { mode: 0o755 });
    const http = {
      enabled: true,
      listen: `127.0.0.1:${tcpPort}`,
      token_file: writeTokenFile(tokenDir, "reader", tcpTokens.reader, { uid: 0, gid: users.groups.plexd }, 0o640),
      secrets_token_file: writeTokenFile(tokenDir, "secrets", tcpTokens.secrets, { uid: users.plexd.uid, gid: users.plexd.gid }, 0o600),
    };
    a = await joinNode({ topo, cp, api, users, name: "api1", config: { node_api: { ...config.node_api, http } } });

    // The watcher subscribes first; a policy change it can see proves the stream is live
    // before anything it must report happens.
    watcher = spawnInNamespace({ ns: a.ns, name: "api1-watch", user: "plexd", argv: ["node", join(distDir, "plexd.js"), "watch", "-o", "json", "--socket", a.apiSocket] });
    let attempt = 0;
    await until("the watcher to see a policy change", async () => {
      // A new id each time: an unchanged policy set is no change and would never be reported.
      await cp.client.setPolicies(nodeId(a), [{ id: `p0-${attempt++}`, rules: [] }]);
      await new Promise((r) => setTimeout(r, 500));
      return watched().some((e) => e.kind === "policy_changed");
    }, 30_000);

    b = await joinNode({ topo, cp, api, users, name: "api2", config });
    rules = [
      { src: nodeId(a), dst: nodeId(b), port: 0, protocol: "", action: "allow" },
      { src: nodeId(b), dst: nodeId(a), port: 0, protocol: "", action: "allow" },
    ];
  });

  // The mesh each test here starts from: policy p1 admits a and b to each other and the
  // tunnel carries a ping. Setting an unchanged policy set again changes nothing.
  beforeEach(async () => {
    for (const n of [a, b]) await cp.client.setPolicies(nodeId(n), [{ id: "p1", rules }]);
    await until("a ping across the mesh", async () => (await ping(b.ns, meshIp(a), { count: 1, timeoutMs: 3000 })).ok, 60_000);
  });

  it("plexd status, peers and policies show the agent, its live tunnel and rule counters", async () => {
    await expect.poll(async () => json(await cliAs(a, users, "reader", ["status", "-o", "json"])), { timeout: 30_000 }).toMatchObject({
      node_id: nodeId(a),
      mesh_ip: meshIp(a),
      phase: "connected",
      sse: { connected: true },
      last_heartbeat: { ok: true },
      privhelper_ok: true,
      peer_count: 1,
    });
    const text = await cliAs(a, users, "reader", ["status"]);
    expect(text.exitCode, text.stderr).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`^Node\\s+${nodeId(a)}\\s+${meshIp(a).replace(/\./g, "\\.")}$`, "m"));
    expect(text.stdout).toMatch(/^privhelper\s+ok$/m);

    // Peers: the desired peer joined with wg's live data (handshake, bytes, endpoint).
    const wg = (await wgShow(a.ns, a.iface)).peers[0]!;
    const peers = json<{ peers: Record<string, unknown>[] }>(await cliAs(a, users, "reader", ["peers", "-o", "json"])).peers;
    expect(peers).toHaveLength(1);
    expect(peers[0]).toMatchObject({ peer_id: nodeId(b), mesh_ip: meshIp(b), visible: true, endpoint: `${topo.node("api2").ip}:51820`, public_key: wg.publicKey });
    expect(Date.now() - Date.parse(peers[0]!.last_handshake as string)).toBeLessThan(180_000);
    expect(Number(peers[0]!.rx_bytes)).toBeGreaterThan(0);
    expect(Number(peers[0]!.tx_bytes)).toBeGreaterThan(0);
    expect((await cliAs(a, users, "reader", ["peers"])).stdout).toMatch(new RegExp(`^${nodeId(b)}\\s+${b.name}\\s+${meshIp(b).replace(/\./g, "\\.")}\\s`, "m"));

    // Policies with the kernel's counters: pings from b hit the rule that admits b.
    expect((await ping(b.ns, meshIp(a), { count: 3, timeoutMs: 5000 })).ok).toBe(true);
    const pol = json<{ policies: { id: string }[]; firewall_rules: { text: string; packets: string; chain: string }[]; default: string }>(
      await cliAs(a, users, "reader", ["policies", "--rules", "-o", "json"]),
    );
    expect(pol.policies.map((p) => p.id)).toEqual(["p1"]);
    expect(pol.default).toBe("deny");
    const admitB = pol.firewall_rules.find((r) => r.text.includes(`ip saddr ${meshIp(b)} `) && r.text.endsWith(" accept"));
    expect(admitB, JSON.stringify(pol.firewall_rules)).toBeDefined();
    expect(Number(admitB!.packets)).toBeGreaterThan(0);
    expect((await cliAs(a, users, "reader", ["policies", "--rules"])).stdout).toMatch(/^policy p1$/m);
  });

  it("server reflection answers a generic tool from the installed agent (buf curl --list-services)", async () => {
    // The bundled agent carries @grpc/reflection, which reads .proto files beside its code.
    const buf = join(distDir, "..", "node_modules", ".bin", "buf");
    const r = await run([buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--unix-socket", a.apiSocket, "--list-services", "http://plexd"], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout.split("\n")).toEqual(expect.arrayContaining(["plexd.node.v1.AgentService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]));
  });

  it("metadata and data pushed from mockcp (event and state pull) are readable through the API and the CLI", async () => {
    await cp.client.setNodeState(nodeId(a), { metadata: { environment: "e2e", team: "net" }, data: [{ key: "app-config", payload: { replicas: 3 } }] });
    await expect.poll(async () => (await cliAs(a, users, "reader", ["state", "get", "metadata", "environment"])).stdout, { timeout: 20_000 }).toBe("e2e");
    const data = await curlAs(a, users, "reader", "/v1/state/data/app-config");
    expect(data.status).toBe(200);
    expect(data.json()).toMatchObject({ entry: { key: "app-config", content_type: "application/json", payload: { replicas: 3 }, version: 1 } });
    // Connect-JSON, the path generated clients use.
    const connect = await curlAs(a, users, "reader", "/plexd.node.v1.NodeStateService/GetMetadata", { method: "POST", body: {} });
    expect(connect.json()).toEqual({ metadata: { environment: "e2e", team: "net" } });
    expect(json(await cliAs(a, users, "reader", ["-o", "json", "state", "get", "data", "app-config"]))).toMatchObject({ entry: { payload: { replicas: 3 } } });

    // Without an event, the next state pull brings the change (one desired state, one copy).
    await cp.client.setNodeState(nodeId(a), { metadata: { environment: "pulled" }, push: false });
    await expect.poll(async () => (await cliAs(a, users, "reader", ["state", "get", "metadata", "environment"])).stdout, { timeout: 30_000, interval: 1000 }).toBe("pulled");
    expect((await cliAs(a, users, "reader", ["state", "get", "metadata", "team"])).exitCode).toBe(4);
    const status = json<{ state_counts: Record<string, number> }>(await cliAs(a, users, "reader", ["status", "-o", "json"]));
    expect(status.state_counts).toMatchObject({ metadata: 1, data: 1 });
  });

  it("a report written locally reaches mockcp; a stale If-Match gets a conflict; a control-plane conflict is resolved", async () => {
    const put = await cliAs(a, users, "reader", ["state", "report", "app-health", "--data", '{"ok":true}']);
    expect(put.exitCode, put.stderr).toBe(0);
    await expect.poll(() => cp.client.reports(nodeId(a)), { timeout: 20_000 }).toMatchObject([{ key: "app-health", version: 1, payload: { ok: true } }]);

    const stale = await cliAs(a, users, "reader", ["state", "report", "app-health", "--data", '{"ok":false}', "--if-match", "5"]);
    expect(stale.exitCode).toBe(6);
    expect(stale.stderr).toMatch(/aborted/);
    const rest = await curlAs(a, users, "reader", "/v1/state/report/app-health", { method: "PUT", headers: { "If-Match": '"9"' }, body: { content_type: "application/json", payload: 1 } });
    expect(rest.status).toBe(409);
    expect(rest.json()).toMatchObject({ code: "aborted" });
    expect(json(await cliAs(a, users, "reader", ["-o", "json", "state", "get", "report", "app-health"]))).toMatchObject({ entry: { version: 1, payload: { ok: true } } });

    // The control plane holds a newer version (e.g. restored from elsewhere): the sync gets
    // 409, moves the entry past it and sends again (docs/mockcp.md#control-plane-api-what-agents-use).
    await cp.client.seedReport(nodeId(a), "app-health", { version: 7, payload: { ok: "from cp" } });
    const next = await cliAs(a, users, "reader", ["state", "report", "app-health", "--data", '{"ok":"again"}', "--if-match", "1"]);
    expect(next.exitCode, next.stderr).toBe(0);
    await expect.poll(() => cp.client.reports(nodeId(a)), { timeout: 20_000 }).toMatchObject([{ key: "app-health", version: 8, payload: { ok: "again" } }]);
    const local = await curlAs(a, users, "reader", "/v1/state/report/app-health");
    expect(local.json()).toMatchObject({ entry: { version: 8 } });
    expect(local.headers).toContain('etag: "8"');
    expect(json<{ entries: unknown[] }>(await cliAs(a, users, "reader", ["-o", "json", "state"]))).toMatchObject({ report_keys: [{ key: "app-health", version: 8, sync_state: "synced" }] });
  });

  it("a secret round-trips per read for plexd-secrets and root; a plain reader is refused it; an outsider gets nothing", async () => {
    await cp.client.setSecret(nodeId(a), "db-password", { value: secretValue });
    // Other tests here add secrets of their own; this one needs its key in the index.
    await expect.poll(async () => (await curlAs(a, users, "reader", "/v1/state/secrets")).json(), { timeout: 20_000 }).toEqual({ secrets: expect.arrayContaining([{ key: "db-password", version: 1 }]) });

    const asRoot = await cliAs(a, users, "root", ["state", "get", "secret", "db-password"]);
    expect(asRoot.exitCode, asRoot.stderr).toBe(0);
    expect(asRoot.stdout).toBe(secretValue);
    const before = (await cp.client.requests({ path: `/v1/nodes/${nodeId(a)}/secrets/db-password` })).length;
    const member = await curlAs(a, users, "secrets", "/v1/state/secrets/db-password");
    expect(member.status).toBe(200);
    expect(member.json()).toEqual({ key: "db-password", value: secretValue, version: 1 });
    expect(member.headers).toContain("cache-control: no-store");
    // Never cached: that read went to the control plane again.
    expect((await cp.client.requests({ path: `/v1/nodes/${nodeId(a)}/secrets/db-password` })).length).toBe(before + 1);

    const reader = await cliAs(a, users, "reader", ["state", "get", "secret", "db-password"]);
    expect(reader.exitCode).toBe(5);
    expect(reader.stderr).toMatch(/permission_denied/);
    expect(reader.stdout).not.toContain(secretValue);
    expect((await curlAs(a, users, "reader", "/v1/state/secrets/db-password")).status).toBe(403);
    // The index is the reader's; only the value is not.
    expect((await cliAs(a, users, "reader", ["state", "-o", "json"])).stdout).toContain("db-password");

    const outsider = await cliAs(a, users, "outsider", ["status"]);
    expect(outsider.exitCode).toBe(5);
    expect(outsider.stderr).toMatch(/permission denied/);
    expect((await curlAs(a, users, "outsider", "/v1/state/metadata")).curlExit).toBe(7);
    expect((await curlAs(a, users, "outsider", "/v1/state/secrets/db-password")).text).not.toContain(secretValue);
  });

  it("the loopback TCP listener wants a bearer token, and only the secrets token reads secrets", async () => {
    const tcp = (path: string, token?: string) => tcpGet(a, path, token);
    expect((await tcp("/v1/agent/status")).status).toBe(401);
    expect((await tcp("/v1/agent/status", "wrong")).status).toBe(401);
    const status = await tcp("/v1/agent/status", tcpTokens.reader);
    expect(status.status).toBe(200);
    expect(JSON.parse(status.body)).toMatchObject({ node_id: nodeId(a) });
    await cp.client.setSecret(nodeId(a), "tcp-secret", { value: secretValue });
    // The secret index reaches the agent with the event (or the next state pull).
    await expect.poll(async () => (await curlAs(a, users, "reader", "/v1/state/secrets")).text, { timeout: 20_000 }).toContain("tcp-secret");
    expect((await tcp("/v1/state/secrets/tcp-secret", tcpTokens.reader)).status).toBe(403);
    const secret = await tcp("/v1/state/secrets/tcp-secret", tcpTokens.secrets);
    expect(secret.status).toBe(200);
    expect(JSON.parse(secret.body)).toMatchObject({ value: secretValue });
    // Admin calls never over TCP, whatever the token.
    expect((await nsExec(a.ns, ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", `Authorization: Bearer ${tcpTokens.secrets}`, `http://127.0.0.1:${tcpPort}/v1/agent/config:reload`], { reject: false })).stdout).toBe("403");
  });

  it("plexd watch streams policy change, handshake, peer up and drift corrected from the live agent", async () => {
    const peerB = nodeId(b);
    const kinds = (): string[] => watched().map((e) => `${e.kind}:${e.subject}`);
    expect(kinds().some((k) => k.startsWith("policy_changed:p0-"))).toBe(true);
    expect(kinds()).toContain("policy_changed:p1");
    await expect.poll(kinds, { timeout: 20_000 }).toEqual(expect.arrayContaining([`handshake:${peerB}`, `peer_up:${peerB}`]));
    // Someone removes the peer behind plexd's back: the next reconcile puts it back and says so.
    const key = (await wgShow(a.ns, a.iface)).peers[0]!.publicKey;
    await nsExec(a.ns, ["wg", "set", a.iface, "peer", key, "remove"]);
    await expect.poll(() => watched().some((e) => e.kind === "drift_corrected" && e.subject === "peer_added" && e.detail === `peer ${peerB}`), { timeout: 30_000, interval: 500 }).toBe(true);
    await expect.poll(async () => (await wgShow(a.ns, a.iface)).peers.length, { timeout: 10_000 }).toBe(1);
    expect(watcher.exited).toBe(false);
  });

  it("answers from start-up phase 3 on: an agent still waiting for its token serves status and state", async () => {
    // No token and no privhelper: the agent waits (docs/architecture.md#lifecycle), and the API says so.
    const c = createNode({ name: "api3", ns: topo.node("api3").ns, api: `https://${topo.hub.ip}:${cpPort}`, caFile: cp.caFile, users });
    c.startAgent();
    await expect.poll(async () => json(await cliAs(c, users, "reader", ["status", "-o", "json"])), { timeout: 20_000 }).toMatchObject({
      phase: "awaiting_token",
      node_id: "",
      privhelper_ok: false,
      peer_count: 0,
    });
    expect((await cliAs(c, users, "reader", ["status"])).stdout).toMatch(/^Node\s+\(not registered\)/m);
    expect(json(await cliAs(c, users, "reader", ["state", "-o", "json"]))).toMatchObject({ metadata: {}, data_keys: [], secret_keys: [], report_keys: [] });
    const secret = await cliAs(c, users, "root", ["state", "get", "secret", "anything"]);
    expect(secret.exitCode).toBe(7);
    expect(secret.stderr).toMatch(/not registered/);
    // The socket is the group's, not the world's (docs/node-api.md).
    const st = await run(["stat", "-c", "%U:%G %a", c.apiSocket]);
    expect(st.stdout.trim()).toBe("plexd:plexd 660");
    await c.agent!.kill("SIGTERM");
    expect(c.agent!.exitInfo?.exitCode).toBe(0);
    expect((await run(["test", "-e", c.apiSocket], { reject: false })).exitCode).toBe(1);
  });
});

describe("node API TCP secrets token file", () => {
  it("a group-readable secrets token file keeps TCP secret reads off and says so; the reader token still works", async () => {
    const topo = await createTopology({ nodes: ["tok1"] });
    // Group plexd (the readers) could read this secrets token: the agent must not honour it.
    const tokenDir = makeTempDir("api-tokens", { mode: 0o755 });
    const reader = randomBytes(16).toString("hex");
    const secrets = randomBytes(16).toString("hex");
    const secretsFile = writeTokenFile(tokenDir, "secrets", secrets, { uid: 0, gid: users.groups.plexd }, 0o640);
    const http = { enabled: true, listen: `127.0.0.1:${tcpPort}`, token_file: writeTokenFile(tokenDir, "reader", reader, { uid: 0, gid: users.groups.plexd }, 0o640), secrets_token_file: secretsFile };
    // No bootstrap token: the agent waits for one, its node API and TCP listener already up.
    const n = createNode({ name: "tok1", ns: topo.node("tok1").ns, api: `https://${topo.hub.ip}:${cpPort}`, caFile: "", users, config: { control_plane: { ca_file: "" }, node_api: { http } } });
    const agent = n.startAgent();
    const refused = `node_api.http.secrets_token_file: ${secretsFile} has owner uid 0 and mode 0640; the secrets token file must be owned by the agent's user (uid ${users.plexd.uid}) or root and grant nothing to group or others`;

    // Visible to the operator: plexd status (text and JSON) and an error line in the agent's log.
    await expect
      .poll(async () => json<{ health: { code: string; severity: string; text: string }[] }>(await cliAs(n, users, "reader", ["status", "-o", "json"])).health, { timeout: 20_000 })
      .toContainEqual(expect.objectContaining({ code: "node_api_secrets_token_refused", severity: "warning", text: expect.stringContaining(refused) }));
    expect((await cliAs(n, users, "reader", ["status"])).stdout).toContain("node_api_secrets_token_refused");
    expect(agent.output()).toMatch(/"level":50,.*"msg":"TCP secrets access disabled: node_api\.http\.secrets_token_file: /);
    expect(agent.exited).toBe(false);
    // The token in that file opens nothing; the reader token works as before.
    expect((await tcpGet(n, "/v1/state/secrets/anything", secrets)).status).toBe(401);
    expect((await tcpGet(n, "/v1/agent/status", reader)).status).toBe(200);
    expect(agent.output()).not.toContain(secrets);
  });
});

describe("node API with the control plane gone", () => {
  it("with mockcp stopped a secret read is UNAVAILABLE, cached state is still served, and no plaintext is on disk", async () => {
    const topo = await createTopology({ nodes: ["off1"] });
    const cp = await startCpOnHub(topo);
    const a = await joinNode({ topo, cp, api: `https://${topo.hub.ip}:${cpPort}`, users, name: "off1" });
    // What the agent caches (metadata, the secret index), and one secret read in plaintext.
    await cp.client.setNodeState(nodeId(a), { metadata: { environment: "cached" } });
    await cp.client.setSecret(nodeId(a), "db-password", { value: secretValue });
    await expect.poll(async () => (await curlAs(a, users, "reader", "/v1/state/secrets")).json(), { timeout: 20_000 }).toEqual({ secrets: [{ key: "db-password", version: 1 }] });
    await expect.poll(async () => (await cliAs(a, users, "reader", ["state", "get", "metadata", "environment"])).stdout, { timeout: 20_000 }).toBe("cached");
    const read = await cliAs(a, users, "root", ["state", "get", "secret", "db-password"]);
    expect(read.stdout, read.stderr).toBe(secretValue);

    await cp.stop();
    const cli = await cliAs(a, users, "root", ["state", "get", "secret", "db-password"]);
    expect(cli.exitCode).toBe(7);
    expect(cli.stderr).toMatch(/unavailable: control plane unavailable/);
    const rest = await curlAs(a, users, "secrets", "/v1/state/secrets/db-password");
    expect(rest.status).toBe(503);
    expect(rest.json()).toEqual({ code: "unavailable", message: "control plane unavailable" });
    expect((await cliAs(a, users, "reader", ["state", "get", "metadata", "environment"])).stdout).toBe("cached");

    // The value crossed the API in plaintext above; it is in no file of the node, nor in the agent's log.
    const grep = await run(["grep", "-rlF", "-D", "skip", secretValue, a.root, `/run/plexd/${a.ns}`], { reject: false });
    expect(grep.exitCode, grep.stdout).toBe(1);
    expect(a.agent!.output()).not.toContain(secretValue);
  });
});
