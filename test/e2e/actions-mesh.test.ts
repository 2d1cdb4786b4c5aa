import { beforeAll, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { createTopology, ensureSystemUsers, ping, useHarness, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { joinNode, meshIp, nodeId } from "./lib/mesh.js";
import type { PlexdNode } from "./lib/node.js";

// Mesh diagnostics between two real nodes over WireGuard (docs/actions.md "Built-in
// actions"): diagnostics.ping_peer and diagnostics.traceroute_peer through privhelper's
// PingPeers and Traceroute, pushed by mockcp, answered with ack and result.

useHarness();

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let a: PlexdNode;
let b: PlexdNode;

beforeAll(async () => {
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["am1", "am2"] });
  cp = await startCpOnHub(topo, { stun: true });
  const api = `https://${topo.hub.ip}:${cpPort}`;
  a = await joinNode({ topo, cp, api, users, name: "am1" });
  // b answers path tests at 50 packets/s at most.
  b = await joinNode({ topo, cp, api, users, name: "am2", config: { actions: { path_test: { max_packets_per_second: 50 } } } });
  const rules = [
    { src: nodeId(a), dst: nodeId(b), port: 0, protocol: "", action: "allow" },
    { src: nodeId(b), dst: nodeId(a), port: 0, protocol: "", action: "allow" },
  ];
  for (const n of [a, b]) await cp.client.setPolicies(nodeId(n), [{ id: "p1", rules }]);
  const end = Date.now() + 60_000;
  while (!(await ping(a.ns, meshIp(b), { count: 1, timeoutMs: 3000 })).ok) {
    if (Date.now() > end) throw new Error("no ping across the mesh within 60 s");
  }
});

const run = async (action: string, parameters: Record<string, string | number>) => {
  const { execution_id } = await cp.client.pushAction(nodeId(a), { action, parameters, timeout: "60s" });
  const rec = await cp.client.waitForResult(nodeId(a), execution_id, { timeoutMs: 90_000 });
  expect(rec.acks.map((x) => x.body)).toEqual([{ execution_id, status: "accepted", reason: "" }]);
  const r = rec.result!.body as { status: string; exit_code: number; stdout: string; stderr: string };
  return { ...r, doc: r.stdout === "" ? {} : (JSON.parse(r.stdout) as Record<string, unknown>) };
};

describe("mesh diagnostics", () => {
  it("ping_peer reaches the peer over the tunnel", async () => {
    const r = await run("diagnostics.ping_peer", { peer_id: nodeId(b), count: 5 });
    expect(r, r.stderr).toMatchObject({ status: "success", exit_code: 0 });
    expect(r.doc).toMatchObject({ peer_id: nodeId(b), mesh_ip: meshIp(b), sent: 5, received: 5, loss_percent: 0 });
    const rtt = r.doc.rtt_ms as { min: number; avg: number; max: number };
    expect(rtt.min).toBeGreaterThan(0);
    expect(rtt.min).toBeLessThanOrEqual(rtt.avg);
    expect(rtt.avg).toBeLessThanOrEqual(rtt.max);
  });

  it("traceroute_peer finds the peer one hop away", async () => {
    const r = await run("diagnostics.traceroute_peer", { peer_id: nodeId(b), max_hops: 5 });
    expect(r, r.stderr).toMatchObject({ status: "success", exit_code: 0 });
    expect(r.doc).toMatchObject({ peer_id: nodeId(b), mesh_ip: meshIp(b), hops: [{ hop: 1, address: meshIp(b), rtt_ms: expect.any(Number) }] });
  });

  it("path_test measures RTT, jitter and loss over WireGuard within the peer's rate cap", async () => {
    const r = await run("diagnostics.path_test", { peer_id: nodeId(b), mode: "udp_echo", duration: "2s", rate: 20 });
    expect(r, r.stderr).toMatchObject({ status: "success", exit_code: 0 });
    expect(r.doc).toMatchObject({ peer_id: nodeId(b), mesh_ip: meshIp(b), mode: "udp_echo", duration: "2s", rate: 20, loss_percent: 0 });
    expect(r.doc.sent).toBeGreaterThanOrEqual(36);
    expect(r.doc.received).toBe(r.doc.sent);
    const rtt = r.doc.rtt_ms as { min: number; avg: number; p99: number };
    expect(rtt.min).toBeGreaterThan(0);
    expect(rtt.min).toBeLessThanOrEqual(rtt.avg);
    expect(rtt.avg).toBeLessThanOrEqual(rtt.p99);
    expect(r.doc.jitter_ms).toEqual(expect.any(Number));
    expect(r.doc.goodput_bps).toBeGreaterThan(0);

    // Four times b's cap: b answers no more than its cap (one second of burst, then 50/s).
    const capped = await run("diagnostics.path_test", { peer_id: nodeId(b), mode: "udp_echo", duration: "2s", rate: 200 });
    expect(capped.doc.sent).toBeGreaterThan(300);
    expect(capped.doc.received).toBeLessThanOrEqual(160);
    expect(capped.doc.loss_percent).toBeGreaterThan(45);

    const tp = await run("diagnostics.path_test", { peer_id: nodeId(b), mode: "throughput", duration: "2s", rate: 40 });
    expect(tp).toMatchObject({ status: "success", doc: { mode: "throughput", loss_percent: 0 } });
    expect(tp.doc.goodput_bps).toBeGreaterThan(40 * 1200 * 8 * 0.7);
  });

  it("an unknown peer ends with error, a peer without replies with failure", async () => {
    const unknown = await run("diagnostics.ping_peer", { peer_id: "n_nosuchpeer" });
    expect(unknown).toMatchObject({ status: "error", exit_code: -1 });
    expect(unknown.stderr).toContain("unknown peer n_nosuchpeer");
    // The policy now keeps b out: the echo requests go nowhere.
    await cp.client.setPolicies(nodeId(a), []);
    await expect
      .poll(async () => (await run("diagnostics.ping_peer", { peer_id: nodeId(b), count: 2 })).status, { timeout: 60_000, interval: 2000 })
      .not.toBe("success");
    const lost = await run("diagnostics.ping_peer", { peer_id: nodeId(b), count: 2 });
    expect(lost).toMatchObject({ status: "failure", exit_code: 1, doc: { received: 0, loss_percent: 100 } });
  });
});
