import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { createTopology, ensureSystemUsers, makeTempDir, spawnInNamespace, useHarness, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { linesWith } from "./lib/logs.js";
import { nodeId } from "./lib/mesh.js";
import { builtExecutables, createNode, type PlexdNode } from "./lib/node.js";

// Local runs with a session token (docs/actions.md "Session tokens"): a user outside group
// plexd, as in an access-proxy SSH session, runs `plexd actions run` with PLEXD_SESSION_TOKEN
// minted by mockcp. A valid token runs an action in its scope and the result names the
// session; every other token is refused with its reason and nothing runs; no token at all is a
// direct access, refused and reported to the control plane.

useHarness();

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let node: PlexdNode;
let id: string;
let clientConfig: string;

beforeAll(async () => {
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["sess"] });
  cp = await startCpOnHub(topo);
  const { token } = await cp.client.createToken();
  node = createNode({ name: "sess", ns: topo.node("sess").ns, api: `https://${topo.hub.ip}:${cpPort}`, caFile: cp.caFile, users, token });
  await node.startPrivhelper();
  await node.startAgent().waitForLine(/"msg":"event stream connected"/, 60_000);
  id = nodeId(node);
  // The session user cannot read the node's configuration: it only learns the socket.
  const dir = makeTempDir("session-client", { mode: 0o755 });
  clientConfig = join(dir, "config.yaml");
  writeFileSync(clientConfig, stringify({ actions: { socket: join(`/run/plexd/${node.ns}`, "actions.sock") } }), { mode: 0o644 });
});

/** `plexd actions run` as a user outside group plexd, with the token (if any) in its environment. */
async function run(action: string, token: string | undefined) {
  const p = spawnInNamespace({
    ns: node.ns,
    name: "session-run",
    user: "plexd-outsider",
    argv: [builtExecutables.plexd, "actions", "run", action, "--config", clientConfig],
    env: token === undefined ? {} : { PLEXD_SESSION_TOKEN: token },
  });
  const exit = await p.waitForExit(30_000);
  return { exitCode: exit.exitCode, output: p.output() };
}

const started = () => linesWith(node.agent!.output(), "action started").length;

describe("session-token local runs", () => {
  // An agent restarted by a test is stopped by the harness at that test's end.
  beforeEach(async () => {
    if (node.agent?.exited !== false) await node.startAgent().waitForLine(/"msg":"event stream connected"/, 60_000);
  });

  it("a valid token runs an action in its scope; the result names the session", async () => {
    const { token, claims } = await cp.client.mintSessionToken({ node_id: id, actions: ["system.*"], sub: "u_alice", email: "alice@example.com" });
    const r = await run("system.info", token);
    expect(r.exitCode, r.output).toBe(0);
    expect(r.output).toContain(`"node_id":"${id}"`);
    expect(r.output).not.toContain(token);
    const executionId = /accepted: (local_[0-9a-f-]{36})/.exec(r.output)?.[1];
    const rec = await cp.client.waitForResult(id, executionId!, { timeoutMs: 30_000 });
    expect(rec.result!.body).toMatchObject({ status: "success", triggered_by: { type: "session", session_id: claims.session_id, user_id: "u_alice", email: "alice@example.com" } });
    // The token is not written to the agent's log.
    expect(node.agent!.output()).not.toContain(token);
  });

  it("out of scope, expired, for another node, too long-lived, revoked (also after a restart) or unsigned: refused with the reason, nothing runs", async () => {
    const now = Math.floor(Date.now() / 1000);
    const revoked = await cp.client.mintSessionToken({ node_id: id, actions: ["*"] });
    await cp.client.revokeSession(id, revoked.claims.session_id);
    await expect.poll(() => linesWith(node.agent!.output(), "session revoked: its token no longer runs actions", { session_id: revoked.claims.session_id }).length, { timeout: 15_000 }).toBe(1);
    const cases: [string, string, RegExp][] = [
      ["health.check", (await cp.client.mintSessionToken({ node_id: id, actions: ["system.*", "hooks/*"] })).token, /unauthorized: health\.check is outside the session's scope \(system\.\*, hooks\/\*\)/],
      ["system.info", (await cp.client.mintSessionToken({ node_id: id, actions: ["*"], iat: now - 7200, ttl_seconds: 3600 })).token, /unauthorized: session token expired at/],
      ["system.info", (await cp.client.mintSessionToken({ node_id: "n_somewhere_else", actions: ["*"] })).token, new RegExp(`unauthorized: session token is for node n_somewhere_else, not this node \\(${id}\\)`)],
      ["system.info", (await cp.client.mintSessionToken({ node_id: id, actions: ["*"], ttl_seconds: 25 * 3600 })).token, /unauthorized: session token lifetime 90000s is longer than 24h/],
      ["system.info", revoked.token, new RegExp(`unauthorized: session ${revoked.claims.session_id} is revoked`)],
      ["system.info", "eyJhbGciOiJub25lIn0.eyJub2RlX2lkIjoieCJ9.", /unauthorized: session token algorithm "none" is not EdDSA/],
    ];
    const before = started();
    for (const [action, token, reason] of cases) {
      const r = await run(action, token);
      expect(r.exitCode, r.output).toBe(5);
      expect(r.output).toMatch(reason);
    }
    expect(started()).toBe(before);

    // The revocation outlives a restart of the agent.
    await node.agent!.kill("SIGTERM");
    await node.startAgent().waitForLine(/"msg":"event stream connected"/, 60_000);
    const again = await run("system.info", revoked.token);
    expect(again.exitCode, again.output).toBe(5);
    expect(again.output).toContain(`unauthorized: session ${revoked.claims.session_id} is revoked`);
  });

  it("without a token: a direct access, refused and reported to the control plane", async () => {
    const before = started();
    const r = await run("system.info", undefined);
    expect(r.exitCode, r.output).toBe(5);
    expect(r.output).toContain("unauthorized: no session token");
    expect(started()).toBe(before);
    await expect
      .poll(async () => (await cp.client.executions(id)).map((e) => e.result?.body as { triggered_by?: { type: string }; status: string; stderr: string } | undefined).find((b) => b?.triggered_by?.type === "direct_access"), { timeout: 30_000 })
      .toMatchObject({ status: "error", stderr: expect.stringContaining("without a session token (direct access); refused, nothing ran") });
  });

  it("during a signing-key rotation, tokens signed by the previous key still verify, as do the new key's", async () => {
    await cp.client.rotateSigningKey({ transition_period: "1h" });
    // Taken from the signing_key_rotated event, or from the state pull after a reconnect.
    await expect.poll(() => /"msg":"signing key rotated"|"detail":"signing keys rotated"/.test(node.agent!.output()), { timeout: 15_000 }).toBe(true);
    for (const key of ["previous", "current"] as const) {
      const { token } = await cp.client.mintSessionToken({ node_id: id, actions: ["system.info"], key });
      const r = await run("system.info", token);
      expect(r.exitCode, `${key}: ${r.output}`).toBe(0);
    }
  });
});
