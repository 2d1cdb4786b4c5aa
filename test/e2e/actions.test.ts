import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { createTopology, ensureSystemUsers, nsExec, useHarness, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { linesWith } from "./lib/logs.js";
import { nodeId } from "./lib/mesh.js";
import { createNode, type PlexdNode } from "./lib/node.js";

// Remote actions against a real agent, privhelper and mockcp in namespaces (docs/actions.md):
// every built-in answers with ack and result, bad requests get their reason and run nothing,
// and a replayed execution id never runs twice — also after the agent restarted.

useHarness();

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let node: PlexdNode;
let id: string;
let bootstrapToken: string;

async function startAgent(): Promise<void> {
  const p = node.startAgent();
  await p.waitForLine(/"msg":"event stream connected"/, 60_000);
}

beforeAll(async () => {
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["act"] });
  cp = await startCpOnHub(topo);
  const { token } = await cp.client.createToken();
  bootstrapToken = token;
  node = createNode({ name: "act", ns: topo.node("act").ns, api: `https://${topo.hub.ip}:${cpPort}`, caFile: cp.caFile, users, token, config: { actions: { max_concurrent: 2 } } });
  await node.startPrivhelper();
  await startAgent();
  id = nodeId(node);
});

const acks = async (executionId: string) => (await cp.client.execution(id, executionId)).acks.map((a) => a.body as { status: string; reason: string });
/** "action started" lines for `executionId` ("" counts them all). */
const started = (executionId: string) => linesWith(node.agent!.output(), "action started", executionId === "" ? {} : { execution_id: executionId }).length;

describe("built-in actions", () => {
  it("are announced at registration with their parameters", async () => {
    const { capabilities } = await cp.client.capabilities(id);
    const names = (capabilities as { builtin_actions: { name: string; parameters: { name: string }[] }[] }).builtin_actions.map((b) => b.name);
    expect(names).toEqual(expect.arrayContaining(["system.info", "health.check", "diagnostics.collect", "service.reload_config", "config.dump", "mesh.reconnect", "logs.snapshot", "diagnostics.ping_peer", "diagnostics.traceroute_peer", "service.restart"]));
  });

  it("each gets an ack and a result with its document", async () => {
    const run = async (action: string, parameters: Record<string, string | boolean> = {}) => {
      const { execution_id } = await cp.client.pushAction(id, { action, parameters });
      const rec = await cp.client.waitForResult(id, execution_id, { timeoutMs: 30_000 });
      expect(rec.acks.map((a) => a.body)).toEqual([{ execution_id, status: "accepted", reason: "" }]);
      const r = rec.result!.body as { status: string; exit_code: number; stdout: string; stderr: string; duration: string; triggered_by: { type: string } };
      expect(r.duration).toMatch(/^\d+\.\d+s$/);
      expect(r.triggered_by.type).toBe("control_plane");
      return { ...r, doc: r.stdout === "" ? {} : (JSON.parse(r.stdout) as Record<string, unknown>) };
    };
    const info = await run("system.info");
    expect(info).toMatchObject({ status: "success", exit_code: 0 });
    expect(info.doc).toMatchObject({ node_id: id, hostname: expect.any(String), kernel: expect.any(String), cpu_count: expect.any(Number), plexd_version: expect.any(String), peer_count: 0 });
    expect(Object.keys(info.doc).sort()).toEqual(["arch", "cpu_count", "cpu_model", "hostname", "kernel", "memory_total", "mesh_ip", "node_id", "os", "peer_count", "plexd_version", "runtime_version", "uptime"]);

    const health = await run("health.check", { include_peers: true });
    expect(health.doc.status).toMatch(/^(healthy|degraded|unhealthy)$/);
    expect(health.exit_code).toBe({ healthy: 0, degraded: 1, unhealthy: 2 }[health.doc.status as string]);
    expect((health.doc.checks as { name: string }[]).map((c) => c.name)).toEqual(["registered", "sse_connected", "heartbeat", "reconcile", "privhelper", "interface_up", "firewall_applied", "integrity", "node_api"]);
    expect(health.doc.peers).toEqual([]);

    const diag = await run("diagnostics.collect", { include_processes: false });
    expect(diag).toMatchObject({ status: "success", exit_code: 0 });
    expect(diag.doc).toMatchObject({ cpu_percent: expect.any(Number), load_avg: expect.any(Array), memory: { used: expect.any(Number), total: expect.any(Number) }, network: { mesh: { node_id: id } } });
    expect(diag.doc.processes).toBeUndefined();

    const reload = await run("service.reload_config");
    expect(reload).toMatchObject({ status: "success", exit_code: 0, doc: { applied: [], restart_required: [] } });

    const dump = await run("config.dump");
    expect(dump.doc).toMatchObject({ api: { value: `https://${topo.hub.ip}:${cpPort}`, source: "file" }, "actions.max_concurrent": { value: 2, source: "file" }, "actions.default_timeout": { value: "30s", source: "default" } });
    expect(JSON.stringify(dump.doc)).not.toContain(bootstrapToken);

    // The journal of both units (these machines have none: zero lines, still a valid document).
    const logs = await run("logs.snapshot", { lines: "50" });
    expect(logs).toMatchObject({ status: "success", exit_code: 0, doc: { encoding: "gzip+base64", truncated: false } });
    const text = gunzipSync(Buffer.from(logs.doc.data as string, "base64")).toString();
    expect(text === "" ? 0 : text.trimEnd().split("\n").length).toBe(logs.doc.lines);

    // No systemd here: the restart is refused up front, with the reason, and the agent stays.
    const restart = await run("service.restart");
    expect(restart).toMatchObject({ status: "error", exit_code: -1 });
    expect(restart.stderr).toContain("systemd is not the init system");
    expect(node.agent!.exited).toBe(false);

    // The interface is deleted and created again: a new ifindex.
    const ifindex = async () => (await nsExec(node.ns, ["ip", "-o", "link", "show", node.iface])).stdout.split(":")[0];
    const before = await ifindex();
    const reconnect = await run("mesh.reconnect");
    expect(reconnect).toMatchObject({ status: "success", exit_code: 0, doc: { peers_configured: 0 } });
    expect(await ifindex()).not.toBe(before);
  });
});

describe("bad requests", () => {
  it("each gets its reason and nothing runs", async () => {
    const cases: [Parameters<typeof cp.client.pushAction>[1], string][] = [
      [{ action: "no.such_action" }, "unknown_action"],
      [{ action: "hooks/undeclared" }, "unknown_action"],
      [{ action: "system.info", type: "hook" }, "unknown_action"],
      [{ action: "system.info", parameters: { extra: "x" } }, "invalid_parameters"],
      [{ action: "health.check", parameters: { include_peers: "$(reboot)\n;rm -rf /" } }, "invalid_parameters"],
      [{ action: "health.check", parameters: { include_peers: 1 } }, "invalid_parameters"],
    ];
    const pushed = [];
    for (const [req] of cases) pushed.push(await cp.client.pushAction(id, req));
    for (const [i, p] of pushed.entries()) {
      await expect.poll(() => acks(p.execution_id), { timeout: 30_000 }).toEqual([{ execution_id: p.execution_id, status: "rejected", reason: cases[i]![1] }]);
      expect(started(p.execution_id)).toBe(0);
    }
    // A 129-character execution id names no execution: logged, never acknowledged, never run.
    const long = await cp.client.pushAction(id, { action: "system.info", execution_id: "x".repeat(129) });
    const marker = await cp.client.pushAction(id, { action: "no.such_action" });
    await expect.poll(() => acks(marker.execution_id), { timeout: 30_000 }).toHaveLength(1);
    expect(await acks(long.execution_id)).toEqual([]);
    expect(linesWith(node.agent!.output(), "action_request without a usable execution_id; not acknowledged").length).toBeGreaterThanOrEqual(1);
    expect((await cp.client.execution(id, long.execution_id)).result).toBeNull();
  });
});

describe("replays", () => {
  it("a replayed execution_id does not run twice, also after an agent restart", async () => {
    const first = await cp.client.pushAction(id, { action: "system.info", execution_id: "exec_replayed" });
    await cp.client.waitForResult(id, first.execution_id, { timeoutMs: 30_000 });
    // The same execution in a new event (new event id, nonce and signature): dropped, no second ack.
    await cp.client.pushAction(id, { action: "system.info", execution_id: "exec_replayed" });
    const marker = await cp.client.pushAction(id, { action: "system.info" });
    await cp.client.waitForResult(id, marker.execution_id, { timeoutMs: 30_000 });
    await expect.poll(() => linesWith(node.agent!.output(), "action_request for an execution already acknowledged; dropped", { execution_id: "exec_replayed" }).length, { timeout: 10_000 }).toBe(1);

    // SIGKILL: no orderly snapshot of the memory; its journal alone must carry the id.
    await node.agent!.kill("SIGKILL");
    await startAgent();
    await cp.client.pushAction(id, { action: "system.info", execution_id: "exec_replayed" });
    const after = await cp.client.pushAction(id, { action: "system.info" });
    await cp.client.waitForResult(id, after.execution_id, { timeoutMs: 30_000 });
    await expect.poll(() => linesWith(node.agent!.output(), "action_request for an execution already acknowledged; dropped", { execution_id: "exec_replayed" }).length, { timeout: 10_000 }).toBe(1);
    const rec = await cp.client.execution(id, "exec_replayed");
    expect(rec.acks).toHaveLength(1);
    expect(rec.result_deliveries).toBe(1);
    expect(started("exec_replayed")).toBe(0);

    // The memory is private to the agent.
    for (const f of ["acked.json", "acked.journal"]) {
      const p = join(node.dataDir, "executions", f);
      if (readdirSync(join(node.dataDir, "executions")).includes(f)) expect(statSync(p).mode & 0o777).toBe(0o600);
    }
    expect(statSync(join(node.dataDir, "executions")).mode & 0o777).toBe(0o700);
    const memory = ["acked.json", "acked.journal"].map((f) => readFileSync(join(node.dataDir, "executions", f), "utf8")).join("");
    expect(memory).toContain("exec_replayed");
  });
});

describe("local runs (plexd actions run)", () => {
  // The agent restarted by an earlier test was stopped by the harness at that test's end.
  beforeEach(async () => {
    if (node.agent?.exited !== false) await startAgent();
  });

  it("--local runs through the same admission, prints the output and reports the result with triggered_by", async () => {
    const r = await node.plexd(["actions", "run", "system.info", "--local"]);
    expect(r.exitCode, r.output).toBe(0);
    const executionId = /accepted: (local_[0-9a-f-]{36})/.exec(r.output)?.[1];
    expect(executionId, r.output).toBeDefined();
    expect(r.output).toContain(`"node_id":"${id}"`);
    expect(r.output).toMatch(/success \(exit code 0\) in \d+\.\d+s/);
    const rec = await cp.client.waitForResult(id, executionId!, { timeoutMs: 30_000 });
    expect(rec.request).toBeNull();
    expect(rec.acks).toEqual([]);
    expect(rec.result!.body).toMatchObject({ execution_id: executionId, status: "success", triggered_by: { type: "local_emergency" } });

    const asRoot = await node.plexd(["actions", "run", "health.check", "--local", "--param", "include_peers=true", "-o", "json"], { asRoot: true });
    expect(asRoot.exitCode === 0 || asRoot.exitCode === 1, asRoot.output).toBe(true);
    expect(JSON.parse(asRoot.output.slice(asRoot.output.indexOf("{")))).toMatchObject({ status: asRoot.exitCode === 0 ? "success" : "failure", execution_id: expect.stringMatching(/^local_/) });
  });

  it("refuses without --local, and bad requests with their reason", async () => {
    const noLocal = await node.plexd(["actions", "run", "system.info"]);
    expect(noLocal.exitCode).toBe(5);
    expect(noLocal.output).toContain("unauthorized");
    const before = started("");
    const cases: [string[], string][] = [
      [["no.such_action"], "unknown_action"],
      [["system.info", "--param", "x=1"], "invalid_parameters"],
      [["health.check", "--param", "include_peers=$(reboot)"], "invalid_parameters"],
    ];
    for (const [args, reason] of cases) {
      const r = await node.plexd(["actions", "run", ...args, "--local"]);
      expect(r.exitCode, r.output).not.toBe(0);
      expect(r.output).toContain(reason);
    }
    const bad = await node.plexd(["actions", "run", "system.info", "--local", "--param", "novalue"]);
    expect(bad.exitCode).toBe(2);
    expect(started("")).toBe(before);
  });
});
