import { appendFileSync, chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, truncateSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { createTopology, ensureSystemUsers, makeTempDir, nsExec, registerCleanup, run, spawnInNamespace, until, useHarness, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { nodeId } from "./lib/mesh.js";
import { createNode, type LaunchWrap, type PlexdNode } from "./lib/node.js";
import { rssMiB } from "./lib/priv-node.js";

// Log forwarding end to end (docs/telemetry.md#logs): a real agent as user plexd with a real
// privhelper in a namespace, mockcp's strict logs endpoint on the hub. The outage is mockcp
// unreachable for the node (connections refused), so no request half-sent before it can
// land after it and blur the exact overflow count. journald: this machine
// does not run one, so the test starts a real systemd-journald for its duration (removed
// after); the agent runs journalctl itself, as user plexd in group systemd-journal.

useHarness();

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let api: string;
let journalGid: number;

const machineId = (): string => readFileSync("/etc/machine-id", "utf8").trim();

/** A real systemd-journald for this run, unless one already serves /run/systemd/journal. */
async function ensureJournald(): Promise<string> {
  if (existsSync("/run/systemd/journal/socket")) return "the machine's own journald";
  // Removed afterwards, the outermost one the test made first (it takes its children along).
  const created = ["/run/log", "/run/log/journal", "/run/systemd/journal"].filter((d) => !existsSync(d));
  // What systemd-tmpfiles does at boot: journal files readable by group systemd-journal.
  const dir = join("/run/log/journal", machineId());
  mkdirSync(dir, { recursive: true });
  await run(["chown", "root:systemd-journal", "/run/log/journal", dir]);
  chmodSync(dir, 0o2750);
  chmodSync("/run/log/journal", 0o2755);
  const jd = spawnInNamespace({ name: "journald", argv: ["/lib/systemd/systemd-journald"] });
  registerCleanup("journald started for the test", async () => {
    await jd.kill("SIGTERM");
    for (const d of created) rmSync(d, { recursive: true, force: true });
  });
  await until("journald socket", async () => existsSync("/run/systemd/journal/stdout"), 10_000);
  return "a systemd-journald started for the test";
}

/** Writes one journald entry through the native stream protocol (systemd-cat). */
async function journal(text: string | Buffer, tag: string): Promise<void> {
  const p = spawnInNamespace({ name: "systemd-cat", argv: ["systemd-cat", "-t", tag, "-p", "info"], stdin: true });
  p.writeStdin(text);
  p.closeStdin();
  await p.waitForExit(10_000);
}

interface Line {
  message: string;
  source: string;
  path?: string;
  unit: string;
  severity: string;
}

const received = async (n: PlexdNode): Promise<Line[]> => (await cp.client.observability(nodeId(n), "logs")).items as Line[];

/** How often each message arrived. */
async function counts(n: PlexdNode, re: RegExp): Promise<Map<string, number>> {
  const m = new Map<string, number>();
  for (const l of await received(n)) if (re.test(l.message)) m.set(l.message, (m.get(l.message) ?? 0) + 1);
  return m;
}

// The agent as user plexd with groups plexd and systemd-journal (the install's accounts).
const journalWrap: LaunchWrap = (role, argv) => (role === "agent" ? ["setpriv", `--reuid=${users.plexd.uid}`, `--regid=${users.plexd.gid}`, `--groups=${users.plexd.gid},${journalGid}`, "--", ...argv] : [...argv]);

beforeAll(async () => {
  users = await ensureSystemUsers();
  journalGid = Number((await run(["getent", "group", "systemd-journal"])).stdout.split(":")[2]);
  topo = await createTopology({ nodes: ["a", "b", "c"] });
  cp = await startCpOnHub(topo);
  api = `https://${topo.hub.ip}:${cpPort}`;
});

async function startNode(name: string, logs: Record<string, unknown>): Promise<PlexdNode> {
  const { token } = await cp.client.createToken();
  const n = createNode({ name, ns: topo.node(name).ns, api, caFile: cp.caFile, users, token, config: { logs }, wrap: journalWrap });
  await n.startPrivhelper();
  const agent = n.startAgent();
  await agent.waitForLine(/"msg":"registered"/, 30_000);
  return n;
}

/**
 * The control plane gone for this node: its connections to mockcp are refused (a stopped
 * mockcp), by a table of the test's own in the node's namespace. Returns the way back.
 */
async function cutControlPlane(n: PlexdNode): Promise<() => Promise<void>> {
  const table = "plexd_e2e_outage";
  await nsExec(n.ns, ["nft", "-f", "-"], { input: `table inet ${table} {\n chain out {\n  type filter hook output priority 0;\n  ip daddr ${topo.hub.ip} tcp dport ${cpPort} reject with tcp reset\n }\n}\n` });
  const h = registerCleanup(`outage table in ${n.ns}`, async () => void (await nsExec(n.ns, ["nft", "delete", "table", "inet", table]).catch(() => undefined)));
  return () => h.dispose();
}

const lines = (prefix: string, from: number, to: number): string => Array.from({ length: to - from + 1 }, (_, i) => `${prefix}-${from + i}\n`).join("");

describe("log forwarding", () => {
  it("journald and file lines arrive exactly once through rotation, truncation, a deleted file and bad input; root-only files only through TailFile's allow-list", async () => {
    const how = await ensureJournald();
    console.log(`journald source: ${how}`);
    const dir = makeTempDir("logs-a", { mode: 0o755 });
    const app = join(dir, "app");
    mkdirSync(app, { mode: 0o755 });
    writeFileSync(join(app, "app.log"), "before-start\n", { mode: 0o644 });
    writeFileSync(join(app, "gone.log"), "", { mode: 0o644 });
    // Root-only: the agent cannot read these; privhelper serves only what logs.tail_files lists.
    for (const d of ["secure", "outside"]) mkdirSync(join(dir, d), { mode: 0o700 });
    writeFileSync(join(dir, "secure", "auth.log"), "", { mode: 0o600 });
    writeFileSync(join(dir, "outside", "denied.log"), "", { mode: 0o600 });
    const tag = `plexd-e2e-${process.pid}`;
    const a = await startNode("a", {
      sources: ["journald", join(app, "*.log"), join(dir, "secure", "auth.log"), join(dir, "outside", "denied.log")],
      batch_interval: "1s",
      tail_files: [join(dir, "secure", "*.log")],
    });
    await until("log sources read", async () => (await a.plexd(["log-status"])).output.includes("privhelper"), 30_000);

    appendFileSync(join(app, "app.log"), lines("F", 1, 50));
    appendFileSync(join(app, "gone.log"), lines("D", 1, 3));
    appendFileSync(join(dir, "secure", "auth.log"), lines("S", 1, 10));
    appendFileSync(join(dir, "outside", "denied.log"), lines("X", 1, 5));
    for (let i = 1; i <= 20; i++) await journal(`J-${i}\n`, tag);
    await journal(Buffer.from([0x4a, 0x2d, 0x42, 0x49, 0x4e, 0x01, 0xff, 0x0a]), tag);
    // Deleted mid-read: lines written just before the unlink are still read from the open file.
    unlinkSync(join(app, "gone.log"));
    await until("first lines", async () => (await counts(a, /^F-50$/)).size === 1, 30_000);

    // Rotation: lines land in the old file after the rename, then the new file starts.
    renameSync(join(app, "app.log"), join(app, "app.log.1"));
    appendFileSync(join(app, "app.log.1"), lines("F", 51, 60));
    writeFileSync(join(app, "app.log"), lines("F", 61, 70), { mode: 0o644 });
    await until("rotated lines", async () => (await counts(a, /^F-70$/)).size === 1, 30_000);
    // Truncation (copytruncate): smaller than the offset, read again from 0.
    truncateSync(join(app, "app.log"), 0);
    appendFileSync(join(app, "app.log"), lines("F", 71, 75));
    await until("truncated lines", async () => (await counts(a, /^F-75$/)).size === 1, 30_000);
    // Bad input: a 10 MB line without a newline for a while, invalid UTF-8.
    appendFileSync(join(app, "app.log"), "BIG-" + "x".repeat(10 * 1024 * 1024));
    await new Promise((r) => setTimeout(r, 1500));
    appendFileSync(join(app, "app.log"), "\n");
    appendFileSync(join(app, "app.log"), Buffer.concat([Buffer.from("UTF-"), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from("\nF-76\n")]));

    await until("every line", async () => (await counts(a, /^(F-76|S-10|D-3|J-20)$/)).size === 4, 60_000);
    await new Promise((r) => setTimeout(r, 2500));
    const f = await counts(a, /^[FDSJX]-\d+$/);
    const want = [...lines("F", 1, 76).split("\n"), ...lines("D", 1, 3).split("\n"), ...lines("S", 1, 10).split("\n"), ...lines("J", 1, 20).split("\n")].filter((x) => x !== "");
    expect(Object.fromEntries(want.map((w) => [w, f.get(w) ?? 0]))).toEqual(Object.fromEntries(want.map((w) => [w, 1])));
    expect([...f.keys()].filter((k) => k.startsWith("X-"))).toEqual([]);
    const all = await received(a);
    expect(all.some((l) => l.message === "before-start")).toBe(false);
    const big = all.filter((l) => l.message.startsWith("BIG-"));
    expect(big).toHaveLength(1);
    expect(big[0]!.message.endsWith("[truncated]")).toBe(true);
    expect(Buffer.byteLength(big[0]!.message)).toBeLessThanOrEqual(16384);
    expect(all.filter((l) => l.message.startsWith("UTF-")).map((l) => l.message)).toEqual(["UTF-\uFFFD(\uFFFD"]);
    expect(all.filter((l) => l.message.startsWith("J-BIN")).map((l) => l.message)).toEqual(["J-BIN\u0001\uFFFD"]);
    const auth = all.find((l) => l.message === "S-1");
    expect(auth).toMatchObject({ source: "file", path: join(dir, "secure", "auth.log"), severity: "info", unit: "" });
    expect(all.find((l) => l.message === "J-1")).toMatchObject({ source: "journald", severity: "info" });

    const status = (await a.plexd(["log-status"])).output;
    expect(status).toMatch(new RegExp(`${join(dir, "secure", "auth.log")}\\s+privhelper\\s+reading`));
    expect(status).toMatch(new RegExp(`${join(dir, "outside", "denied.log")}\\s+privhelper\\s+denied\\s+\\d+\\s+.*logs\\.tail_files`));
    expect(status).toMatch(/journald\s+journalctl\s+reading/);
    expect((await a.plexd(["status"])).output).toMatch(/^Telemetry logs\s+\d+ buffered, \d+ sent, 0 dropped \(0 overflow\), last flush ok/m);
    const tail = await a.plexd(["logs", "-n", "3", "-o", "json"]);
    expect(tail.exitCode).toBe(0);
    expect(tail.output.trim().split("\n")).toHaveLength(3);
    expect((await a.agent!.kill("SIGTERM")).exitCode).toBe(0);
  }, 240_000);

  it("outage: the control plane refuses connections for 60 s (TCP reset, as a stopped mockcp does, with its registry kept); every line within buffer_size arrives after, overflow counted exactly, RSS bounded; a restart mid-outage re-reads what was not committed", async () => {
    const dir = makeTempDir("logs-b", { mode: 0o755 });
    const file = join(dir, "app.log");
    writeFileSync(file, "", { mode: 0o644 });
    const buffer = 300;
    const b = await startNode("b", { sources: [file], batch_interval: "1s", batch_max_size: 100, buffer_size: buffer });
    await until("file tailed", async () => (await b.plexd(["log-status"])).output.includes("reading"), 30_000);
    appendFileSync(file, lines("W", 1, 10));
    await until("warm-up lines", async () => (await counts(b, /^W-10$/)).size === 1, 30_000);
    const rssBefore = rssMiB(b.agent!.pid)!;

    const restore = await cutControlPlane(b);
    const stoppedAt = Date.now();
    // 1000 lines during the outage; the ring keeps the newest 300.
    for (let i = 0; i < 10; i++) {
      appendFileSync(file, lines("O", i * 100 + 1, i * 100 + 100));
      await new Promise((r) => setTimeout(r, 2000));
    }
    const rssDuring = rssMiB(b.agent!.pid)!;
    await new Promise((r) => setTimeout(r, Math.max(0, 60_000 - (Date.now() - stoppedAt))));
    await restore();
    await until("buffer drained", async () => /^Counters\s+0\/300 buffered/m.test((await b.plexd(["log-status"])).output), 90_000);
    const got = await counts(b, /^O-\d+$/);
    const st = JSON.parse((await b.plexd(["log-status", "-o", "json"])).output) as { dropped_overflow_total?: string };
    const dropped = Number(st.dropped_overflow_total ?? 0);
    // Exactly: what was written and is not there is what the counter says was dropped.
    expect(1000 - got.size).toBe(dropped);
    expect(got.size).toBeGreaterThanOrEqual(buffer - 100);
    // The newest lines won.
    for (let i = 901; i <= 1000; i++) expect(got.get(`O-${i}`)).toBe(1);
    expect([...got.values()].every((c) => c === 1)).toBe(true);
    expect(rssDuring - rssBefore).toBeLessThan(40);
    console.log(`outage: rss before ${rssBefore.toFixed(1)} MiB, during ${rssDuring.toFixed(1)} MiB; delivered ${got.size}, dropped_overflow_total ${dropped}`);

    // Restart mid-outage: lines read during the outage were never committed; the new agent reads them again.
    const restore2 = await cutControlPlane(b);
    appendFileSync(file, lines("R", 1, 150));
    await new Promise((r) => setTimeout(r, 3000));
    await b.agent!.kill("SIGTERM", { graceMs: 15_000 });
    await restore2();
    b.startAgent();
    await until("re-read lines", async () => (await counts(b, /^R-150$/)).size === 1, 60_000);
    await new Promise((r) => setTimeout(r, 3000));
    const r = await counts(b, /^R-\d+$/);
    for (let i = 1; i <= 150; i++) expect(r.get(`R-${i}`) ?? 0).toBeGreaterThanOrEqual(1);
    // Duplicates only for a batch that was in flight when the agent stopped (at most batch_max_size).
    expect([...r.values()].filter((c) => c > 1).length).toBeLessThanOrEqual(100);
    expect((await b.agent!.kill("SIGTERM")).exitCode).toBe(0);
  }, 300_000);

  it("413 halves a logs batch until it fits; 429 waits for Retry-After", async () => {
    const dir = makeTempDir("logs-c", { mode: 0o755 });
    const file = join(dir, "app.log");
    writeFileSync(file, "", { mode: 0o644 });
    const n = await startNode("c", { sources: [file], batch_interval: "1s", batch_max_size: 64 });
    await until("file tailed", async () => (await n.plexd(["log-status"])).output.includes("reading"), 30_000);
    await cp.client.setObservabilityFailure({ mode: "too_large", max_bytes: 2000, kinds: ["logs"], node_id: nodeId(n) });
    appendFileSync(file, lines("H", 1, 64));
    await until("halved lines", async () => (await counts(n, /^H-\d+$/)).size === 64, 60_000);
    const view = await cp.client.observability(nodeId(n), "logs");
    expect(view.counts.rejected_413).toBeGreaterThan(0);
    expect(Math.max(...view.batches.filter((x) => (x.items as Line[]).some((l) => l.message.startsWith("H-"))).map((x) => x.decoded_bytes))).toBeLessThanOrEqual(2000);

    await cp.client.setObservabilityFailure({ mode: "rate_limit", retry_after: 4, count: 1, kinds: ["logs"], node_id: nodeId(n) });
    appendFileSync(file, "T-1\n");
    await until("line after 429", async () => (await counts(n, /^T-1$/)).size === 1, 30_000);
    const reqs = await cp.client.requests({ path: `/v1/nodes/${nodeId(n)}/logs` });
    const limited = reqs.find((x) => x.status === 429)!;
    const ok = reqs.find((x) => x.status === 202 && x.seq > limited.seq)!;
    expect(Date.parse(ok.time) - Date.parse(limited.time)).toBeGreaterThanOrEqual(3900);
    await cp.client.clearObservabilityFailure();
    expect((await n.agent!.kill("SIGTERM")).exitCode).toBe(0);
  }, 180_000);
});
