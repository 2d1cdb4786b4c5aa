import { spawn } from "node:child_process";
import { appendFileSync, mkdirSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import type { AuditEvent } from "../../agent/telemetry/audit/event.js";
import { createTopology, ensureSystemUsers, makeTempDir, registerCleanup, RUN_PREFIX, until, useHarness, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub, startCpOnLoopback } from "./lib/cp.js";
import { foreignPlexdState, freeUdpPort, holdHostLock, hostMeshLeftovers, removeHostMesh } from "./lib/host-netns.js";
import { nodeId } from "./lib/mesh.js";
import { createNode, type PlexdNode } from "./lib/node.js";

// Audit forwarding end to end (docs/telemetry.md#audit). Kernel audit records are multicast
// on the host's initial network namespace only, so a node in a namespace of the test cannot
// have them: that is the health condition `audit_unavailable`, shown by `plexd status` and
// `plexd audit`, while the Kubernetes audit log (root-only, read through privhelper TailFile)
// still reaches mockcp's strict audit endpoint. The live kernel path runs a whole node (privhelper
// and agent) in the host's own namespace, with mockcp on its loopback: a record the kernel makes
// of the test's own message arrives at mockcp as an event.

useHarness();

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let api: string;

beforeAll(async () => {
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["a"] });
  cp = await startCpOnHub(topo);
  api = `https://${topo.hub.ip}:${cpPort}`;
});

const base = {
  kind: "Event",
  apiVersion: "audit.k8s.io/v1",
  level: "Metadata",
  user: { username: "system:serviceaccount:prod:app", groups: ["system:authenticated"] },
  requestReceivedTimestamp: "2026-12-03T18:00:00.000000Z",
  stageTimestamp: "2026-12-03T18:00:00.020000Z",
};
const k8sLine = (auditID: string, stage: string, verb: string, code: number, ref: Record<string, string>) =>
  JSON.stringify({ ...base, auditID, stage, verb, requestURI: `/api/v1/namespaces/${ref.namespace ?? "-"}/${ref.resource}/${ref.name ?? ""}`, objectRef: ref, responseStatus: { code } }) + "\n";

interface Received {
  source: string;
  event_type: string;
  action: string;
  result: string;
  subject: Record<string, unknown>;
  object: Record<string, string>;
  hostname: string;
  raw: string;
}

const received = async (n: PlexdNode, from: LaunchedMockcp = cp): Promise<Received[]> => (await from.client.observability(nodeId(n), "audit")).items as Received[];

async function auditJson(n: PlexdNode, recent = 10): Promise<{ status: { enabled: boolean; sources: string[] }; sources: { name: string; state: string; detail?: string; events_total: string; records_total: string; malformed_total: string }[]; recent_events: string[] }> {
  const r = await n.plexd(["audit", "-n", String(recent), "-o", "json"]);
  expect(r.exitCode, r.output).toBe(0);
  return JSON.parse(r.output) as never;
}

describe("audit forwarding", () => {
  it("in a network namespace: kernel records unavailable as a health condition; the root-only Kubernetes audit log reaches mockcp exactly once through TailFile, across an agent restart", async () => {
    const dir = makeTempDir("audit-k8s", { mode: 0o755 });
    const k8sDir = join(dir, "kubernetes");
    mkdirSync(k8sDir, { mode: 0o700 });
    const log = join(k8sDir, "audit.log");
    // Already there at the first start: read from its end, so this line is never sent.
    writeFileSync(log, k8sLine("old", "ResponseComplete", "get", 200, { resource: "pods", namespace: "kube-system" }), { mode: 0o600 });
    const { token } = await cp.client.createToken();
    const n = createNode({ name: "a", ns: topo.node("a").ns, api, caFile: cp.caFile, users, token, config: { audit: { sources: ["auditd", "kubernetes"], kubernetes_log_path: log, batch_interval: "1s" }, logs: { enabled: false }, observe: { enabled: false } } });
    await n.startPrivhelper();
    await n.startAgent().waitForLine(/"msg":"registered"/, 30_000);

    await until("audit_unavailable raised", async () => (await auditJson(n)).sources.some((s) => s.name === "auditd" && s.state === "unavailable"), 30_000);
    const st = await auditJson(n);
    expect(st.status).toMatchObject({ enabled: true, sources: ["auditd", "kubernetes"] });
    expect(st.sources.find((s) => s.name === "auditd")!.detail).toMatch(/not in the host's initial network namespace/);
    const status = await n.plexd(["status"]);
    expect(status.output).toMatch(/Audit\s+kernel records UNAVAILABLE/);
    expect(status.output).toMatch(/INFO\s+audit_unavailable: kernel audit records cannot be read: privhelper is not in the host's initial network namespace/);
    expect(status.output).toMatch(/Health\s+\S+/);
    await until("kubernetes source reading through privhelper", async () => (await auditJson(n)).sources.some((s) => s.name === "kubernetes" && s.state === "reading" && s.detail === "via privhelper"), 90_000);

    appendFileSync(log, k8sLine("a1", "RequestReceived", "create", 0, { resource: "configmaps", namespace: "prod", name: "cfg" }));
    appendFileSync(log, k8sLine("a1", "ResponseComplete", "create", 201, { resource: "configmaps", namespace: "prod", name: "cfg" }));
    appendFileSync(log, '{"kind":"Event","stage":"ResponseComplete", not json\n');
    appendFileSync(log, k8sLine("a2", "Panic", "delete", 500, { resource: "pods", namespace: "dev", name: "web" }));
    await until("two Kubernetes events at mockcp", async () => (await received(n)).length >= 2, 30_000);
    const events = await received(n);
    expect(events.map((e) => [e.source, e.event_type, e.action, e.result])).toEqual([
      ["k8s-audit", "create", "create", "success"],
      ["k8s-audit", "delete", "delete", "failure"],
    ]);
    expect(events[0]).toMatchObject({ subject: { username: "system:serviceaccount:prod:app", groups: ["system:authenticated"] }, object: { resource: "configmaps", namespace: "prod", name: "cfg", request_uri: "/api/v1/namespaces/prod/configmaps/cfg" }, hostname: expect.any(String) });
    expect(JSON.parse(events[0]!.raw)).toMatchObject({ auditID: "a1", stage: "ResponseComplete" });
    const after = await auditJson(n);
    expect(after.sources.find((s) => s.name === "kubernetes")!.malformed_total).toBe("1");
    expect(after.recent_events.map((l) => (JSON.parse(l) as AuditEvent).action)).toEqual(["create", "delete"]);
    const text = await n.plexd(["audit"]);
    expect(text.output).toMatch(/kubernetes\s+reading/);
    expect(text.output).toMatch(/k8s-audit\s+delete\s+delete\s+failure\s+system:serviceaccount:prod:app\s+dev\/pods\/web/);

    // Restart: the committed position survives; what was sent is not sent again, what was
    // written while the agent was down arrives once.
    expect((await n.agent!.kill("SIGTERM")).exitCode).toBe(0);
    appendFileSync(log, k8sLine("a3", "ResponseComplete", "patch", 200, { resource: "deployments", namespace: "prod", name: "api" }));
    n.startAgent();
    await until("the event written while the agent was down", async () => (await received(n)).some((e) => e.action === "patch"), 90_000);
    await new Promise((r) => setTimeout(r, 3_000)); // a duplicate would have followed within a batch interval
    expect((await received(n)).map((e) => e.action)).toEqual(["create", "delete", "patch"]);
    expect((await n.agent!.kill("SIGTERM")).exitCode).toBe(0);
  });

  it("live, in the host's network namespace: a kernel audit record travels through privhelper WatchAudit and a real agent to mockcp, once, and plexd audit shows the source receiving", async () => {
    // Other runs on this machine must not switch the audit flag or touch the host's namespace meanwhile.
    await holdHostLock("host-netns");
    expect(await foreignPlexdState(), "plexd state in the host's own namespace, which this test's node would change").toEqual([]);
    const local = await startCpOnLoopback();
    const { token } = await local.client.createToken();
    const n = createNode({
      name: "host",
      ns: `${RUN_PREFIX}-hostaudit`,
      hostNetns: true,
      api: local.url,
      caFile: local.caFile,
      users,
      token,
      config: {
        // The node's whole footprint in the host's namespace: one mesh interface with a unique
        // name, no peers, a /32 address and a free UDP port. No firewall: its rules would match
        // only that interface, but the host's nftables are not this test's to add to.
        mesh: { listen_port: await freeUdpPort() },
        policy: { enabled: false },
        audit: { sources: ["auditd"], batch_interval: "1s" },
        logs: { enabled: false },
        observe: { enabled: false },
      },
    });
    registerCleanup(`mesh interface ${n.iface} in the host's namespace`, async () => void (await removeHostMesh(n.iface)));

    // The kernel sends nothing while audit is disabled (the default without auditd): switch
    // it on for this test only and back to what it was afterwards. No audit rule is touched.
    const before = await auditEnabled();
    if (before === 0) {
      registerCleanup("audit enabled flag restored", async () => void (await auditNetlink([auditSetEnabled(0)])));
      await auditNetlink([auditSetEnabled(1)]);
    }

    await n.startPrivhelper();
    await n.startAgent().waitForLine(/"msg":"registered"/, 30_000);
    await until("the watch open", async () => n.privhelper!.output().includes('"stream opened"'), 30_000);

    // One user message per try, each with its own marker: every one that reaches mockcp must do so once.
    const marker = `plexd-e2e-${process.pid}-${Date.now()}`;
    let tries = 0;
    const ours = async (): Promise<Received[]> => (await received(n, local)).filter((e) => e.raw.includes(`marker=${marker}-`));
    await until(
      "a kernel audit record of ours at mockcp",
      async () => {
        await auditNetlink([auditUser(`op=plexd-e2e-check marker=${marker}-${tries} exe="/usr/bin/plexd-e2e" res=success`)]);
        tries++; // counted once the kernel took it
        return (await ours()).length > 0;
      },
      30_000,
    );
    const [ev] = await ours();
    expect(ev).toMatchObject({ source: "auditd", event_type: "USER", action: "USER", result: "success", hostname: hostname(), subject: { uid: 0, pid: expect.any(Number), exe: "/usr/bin/plexd-e2e" }, object: {} });
    expect(ev!.raw).toMatch(/^audit\(\d+\.\d{3}:\d+\): pid=\d+ uid=0 /);
    // Each try's record arrives, and once: a duplicate would follow within a batch interval.
    await until("every try's record at mockcp", async () => (await ours()).length >= tries, 30_000);
    await new Promise((r) => setTimeout(r, 2_000));
    const markers = (await ours()).map((e) => Number(/marker=\S+-(\d+) /.exec(e.raw)?.[1])).sort((a, b) => a - b);
    expect(markers).toEqual(Array.from({ length: tries }, (_, i) => i));

    // The host's kernel audits the whole machine (nft in other tests' namespaces, too): look
    // for ours among the most events plexd audit keeps.
    const st = await auditJson(n, 200);
    expect(st.status).toMatchObject({ enabled: true, sources: ["auditd"] });
    const src = st.sources.find((s) => s.name === "auditd")!;
    expect(src).toMatchObject({ state: "receiving" });
    expect(src.detail ?? "").toBe("");
    expect(Number(src.records_total)).toBeGreaterThanOrEqual(markers.length);
    expect(Number(src.events_total)).toBeGreaterThanOrEqual(markers.length);
    expect(st.recent_events.some((l) => l.includes(`marker=${marker}-`))).toBe(true);
    const text = await n.plexd(["audit", "-n", "200"]);
    expect(text.output).toMatch(/auditd\s+receiving\s+[1-9]\d*\s+[1-9]\d*\s+0\s/);
    expect(text.output).toMatch(/auditd\s+USER\s+USER\s+success\s+\/usr\/bin\/plexd-e2e uid 0/);
    const status = await n.plexd(["status"]);
    expect(status.output).toMatch(/Audit\s+forwarding;/);
    expect(status.output).not.toMatch(/audit_unavailable/);

    // Everything the node made in the host's namespace goes, by name and PID: the agent and
    // privhelper leave the mesh up when they stop (restarts keep tunnels), so the test removes it.
    await until("the node's mesh in the host's namespace", async () => (await hostMeshLeftovers(n.iface)).includes(`link ${n.iface}`), 30_000);
    expect((await n.agent!.kill("SIGTERM")).exitCode).toBe(0);
    expect((await n.privhelper!.kill("SIGTERM")).exitCode).toBe(0);
    expect(await hostMeshLeftovers(n.iface), "the node's mesh after it stopped").toContain(`link ${n.iface}`);
    await removeHostMesh(n.iface);
    expect(await hostMeshLeftovers(n.iface)).toEqual([]);
    expect(await foreignPlexdState()).toEqual([]);
    console.log(`live kernel audit through a real agent: ${tries} user records at mockcp, each once, ${src.records_total} records and ${src.events_total} events seen by the agent (audit was ${before === 0 ? "disabled; enabled for the test" : `enabled (${before})`})`);
  });
});

// ---------------------------------------------------------------- audit netlink, test side
// The test's own way to make the kernel emit records: netlink messages to the kernel through
// socat (as privhelper reads them), built here byte by byte.

function nlmsg(type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(16 + payload.length, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt16LE(0x5, 6); // NLM_F_REQUEST | NLM_F_ACK
  h.writeUInt32LE(1, 8);
  return Buffer.concat([h, payload]);
}

/** AUDIT_SET (1001) with mask AUDIT_STATUS_ENABLED. */
const auditSetEnabled = (on: 0 | 1): Buffer => {
  const st = Buffer.alloc(40);
  st.writeUInt32LE(1, 0);
  st.writeUInt32LE(on, 4);
  return nlmsg(1001, st);
};
/** AUDIT_USER (1005): a user-space message the kernel logs as a record of its own. */
const auditUser = (text: string): Buffer => nlmsg(1005, Buffer.from(text + "\0"));

/** Sends messages to the kernel's audit socket; resolves with the replies' bytes. */
function auditNetlink(msgs: Buffer[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const p = spawn("socat", ["-t", "1", "-b", "65536", "-", "SOCKET-DATAGRAM:16:3:9:x00000000000000000000"], { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let err = "";
    p.stdout.on("data", (d: Buffer) => out.push(d));
    p.stderr.on("data", (d: Buffer) => (err += d.toString()));
    p.on("error", reject);
    p.on("close", (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`socat to the audit socket: exit ${code}: ${err}`))));
    for (const m of msgs) p.stdin.write(m);
    p.stdin.end();
  });
}

/** AUDIT_GET (1000): the `enabled` field of the kernel's audit status (0 off, 1 on, 2 locked). */
async function auditEnabled(): Promise<number> {
  const replies = await auditNetlink([nlmsg(1000, Buffer.alloc(0))]);
  for (let off = 0; off + 16 <= replies.length; ) {
    const len = replies.readUInt32LE(off);
    if (replies.readUInt16LE(off + 4) === 1000) return replies.readUInt32LE(off + 20);
    off += Math.max(16, (len + 3) & ~3);
  }
  throw new Error("no audit status reply from the kernel");
}
