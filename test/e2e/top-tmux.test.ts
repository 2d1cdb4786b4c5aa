import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startFakeNodeApi } from "../support/nodeapi-fake-backend.js";
import type { NodeApiServer } from "../../agent/nodeapi/server.js";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { createTopology, ensureSystemUsers, ping, registerCleanup, useHarness, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { joinNode, meshIp, nodeId } from "./lib/mesh.js";
import type { PlexdNode } from "./lib/node.js";

// `plexd top` in a real terminal (tmux): against a live agent in the e2e harness (peer rows
// of a real two-node mesh, the agent restarted under it, `q` restores the shell), and against
// a fake-backend node API in this process (keys, filter, panels, the server going away).

useHarness();

const repo = resolve(import.meta.dirname, "../..");
const cli = join(repo, "dist/plexd.js");
const ip = (s: string): string => s.replace(/\./g, "\\.");

/** One tmux server of our own (-L), so nothing here touches anyone else's sessions. */
function tmuxFor(server: string) {
  const tmux = (...args: string[]) => execa("tmux", ["-L", server, ...args], { reject: false });
  let socketPath: string | undefined;
  const capture = async (): Promise<string> => (await tmux("capture-pane", "-p", "-t", server)).stdout;
  return {
    tmux,
    capture,
    /** The screen with its SGR escapes (colour, bold, dim, inverse) as the terminal got them. */
    captureEscapes: async (): Promise<string> => (await tmux("capture-pane", "-p", "-e", "-t", server)).stdout,
    async start(cmd: string, size: { columns: number; rows: number } = { columns: 120, rows: 30 }): Promise<void> {
      expect((await tmux("new-session", "-d", "-s", server, "-x", String(size.columns), "-y", String(size.rows), cmd)).exitCode).toBe(0);
      socketPath = (await tmux("display-message", "-p", "#{socket_path}")).stdout.trim();
    },
    keys: (...keys: string[]) => tmux("send-keys", "-t", server, ...keys),
    /** tmux's own record of whether the pane's cursor is visible (Ink hides it while running). */
    cursorVisible: async (): Promise<boolean> => (await tmux("display-message", "-p", "-t", server, "#{cursor_flag}")).stdout.trim() === "1",
    async waitFor(pred: (screen: string) => boolean, what: string, ms = 20_000): Promise<string> {
      const end = Date.now() + ms;
      let screen = "";
      while (Date.now() < end) {
        screen = await capture();
        if (pred(screen)) return screen;
        await new Promise((r) => setTimeout(r, 150));
      }
      throw new Error(`timed out waiting for ${what}; screen:\n${screen}\nwith escapes:\n${JSON.stringify((await tmux("capture-pane", "-p", "-e", "-t", server)).stdout)}`);
    },
    /** kill-server leaves the socket file behind; it goes too. */
    async kill(): Promise<void> {
      await tmux("kill-server");
      if (socketPath) await rm(socketPath, { force: true });
    },
  };
}

// The shell line reports top's exit status and the terminal modes once top is gone:
// `icanon echo` means raw mode was undone (a crashed TUI leaves `-icanon -echo`).
const afterTop = `echo "TOP-EXITED rc=$?"; echo "MODES $(stty -a | tr ' ;' '\\n\\n' | grep -xE -- '-?(icanon|echo)' | tr '\\n' ' ')"; sleep 120`;

const esc = String.fromCharCode(27);
/** An SGR sequence that sets a foreground colour (30–37, 90–97, 256-colour or true colour). */
const colourSgr = new RegExp(`${esc}\\[(?:[0-9;]*;)?(?:3[0-7]|9[0-7]|38;[25];[0-9;]+)m`);
const sgr = (code: string) => new RegExp(`${esc}\\[(?:[0-9;]*;)?${code}(?:;[0-9;]*)?m`);
const anySgr = new RegExp(`${esc}\\[[0-9;]*m`, "g");
/** The line of `screen` that contains `text`, with its escapes. */
const lineWith = (screen: string, text: string): string => screen.split("\n").find((l) => l.replace(anySgr, "").includes(text)) ?? "";

describe("plexd top in tmux against a live agent", () => {
  let users: SystemUsers;
  let topo: Topology;
  let cp: LaunchedMockcp;
  let a: PlexdNode;
  let b: PlexdNode;
  let rules: { src: string; dst: string; port: number; protocol: string; action: string }[];

  beforeAll(async () => {
    if (!existsSync(cli)) throw new Error("dist/plexd.js missing: run `npm run build` first");
    users = await ensureSystemUsers();
    topo = await createTopology({ nodes: ["tui1", "tui2"] });
    cp = await startCpOnHub(topo, { stun: true });
    const api = `https://${topo.hub.ip}:${cpPort}`;
    a = await joinNode({ topo, cp, api, users, name: "tui1" });
    b = await joinNode({ topo, cp, api, users, name: "tui2" });
    rules = [
      { src: nodeId(a), dst: nodeId(b), port: 0, protocol: "", action: "allow" },
      { src: nodeId(b), dst: nodeId(a), port: 0, protocol: "", action: "allow" },
    ];
    for (const n of [a, b]) await cp.client.setPolicies(nodeId(n), [{ id: "p1", rules }]);
    const end = Date.now() + 60_000;
    while (!(await ping(a.ns, meshIp(b), { count: 1, timeoutMs: 3000 })).ok) {
      if (Date.now() > end) throw new Error("no ping across the mesh within 60 s");
    }
  });

  it("at 80×24: colour under CI=true, whole columns, ? and Esc, the clock, stale data when the agent stops, recovery, q", async () => {
    const t = tmuxFor(`plexd-top-live-${process.pid}`);
    registerCleanup("tmux server (live top)", () => t.kill());
    // As user plexd, the way an operator in group plexd runs it; CI=true as on a CI runner,
    // which must not take the colours of a real terminal away.
    await t.start(`CI=true setpriv --reuid=plexd --regid=plexd --init-groups -- node ${cli} top --socket ${a.apiSocket} --interval 500ms; ${afterTop}`, { columns: 80, rows: 24 });
    // The HOST column shows only when it fits (the control plane may send no hostnames: "-").
    const peerRow = new RegExp(`${nodeId(b)}\\s+(?:\\S+\\s+)?${ip(meshIp(b))}\\s+up\\s+`);
    const first = await t.waitFor((s) => peerRow.test(s) && s.includes("control plane connected"), "the peer row of the live mesh");
    const lines = first.split("\n");
    expect(lines.length).toBeLessThanOrEqual(24);
    // The header is whole words on its own line: node id, phase and uptime on the first.
    expect(lines[0]).toMatch(new RegExp(`^${nodeId(a)}\\s.*\\sconnected\\s+up \\d+`));
    // RX, TX and RTT are whole columns at 80 (lower-priority ones went instead).
    expect(lines.find((l) => l.startsWith("PEER"))!.trim().split(/\s+/)).toEqual(expect.arrayContaining(["HANDSHAKE", "RX", "TX", "RTT"]));
    const colours = await t.captureEscapes();
    expect(lineWith(colours, nodeId(b))).toMatch(sgr("32")); // "up" in green
    expect(lineWith(colours, "[Peers]")).toMatch(sgr("7")); // the selected tab, inverse
    expect(await t.cursorVisible()).toBe(false);

    // The uptime moves with the clock, not only when the agent pushes a change.
    const uptime = (screen: string) => /\bup (\S+)/.exec(screen.split("\n")[0] ?? "")?.[1];
    const u1 = uptime(await t.capture());
    await t.waitFor((s) => uptime(s) !== u1, "the uptime to move", 5000);

    await t.keys("?");
    await t.waitFor((s) => s.includes("? or Esc closes this help") && s.includes("Ctrl-C"), "the help overlay");
    await t.keys("Escape");
    await t.waitFor((s) => !s.includes("closes this help") && peerRow.test(s), "the help to close");
    await t.keys("/", "z", "z");
    await t.waitFor((s) => s.includes("no peer matches the filter"), "the filter prompt");
    await t.keys("Escape");
    await t.waitFor((s) => !s.includes("filter:") && peerRow.test(s), "Esc to leave the filter");

    await t.keys("Tab");
    await t.waitFor((s) => s.includes("plexd-mesh") && s.includes(`ip saddr ${meshIp(b)}`), "firewall rules of the live table");
    await t.keys("Tab");
    // The events feed is the live Watch stream: a policy change made now shows up there.
    await cp.client.setPolicies(nodeId(a), [{ id: "p2", rules }]);
    await t.waitFor((s) => s.includes("recent events") && /policy_changed\s+p2/.test(s), "the policy change in the events panel");
    await t.keys("Tab");
    await t.waitFor((s) => s.includes("HEALTH") && s.includes("COUNTERS"), "the NAT & health panel");
    await t.keys("Tab");
    await t.waitFor((s) => s.includes("[Executions]") && s.includes("no executions yet"), "the executions panel");
    // Telemetry: the metrics pipeline's delivery and the latency probe of b over the mesh.
    await t.keys("Tab");
    const tel = await t.waitFor(
      (s) => s.includes("[Telemetry]") && /metrics\s+buffered\s+\d+\s+sent\s+[1-9]\d*\s+dropped\s+0\s+last flush ok/.test(s) && new RegExp(`${nodeId(b)}\\s+rtt [0-9.]+ ms\\s+loss 0%`).test(s),
      "the telemetry panel with delivery counters and b's RTT",
      45_000,
    );
    expect(tel).toContain("PEER LATENCY");
    await t.keys("Tab");
    await t.waitFor((s) => s.includes("[Bridge]") && s.includes("not a bridge (mode: node)"), "the bridge panel of a plain node");
    await t.keys("Tab");
    await t.waitFor((s) => peerRow.test(s), "back to the peers");

    // The agent stops (its socket goes): its last data stays, greyed, with the time of the last
    // answer, and nothing claims a live state any more.
    await a.agent!.kill("SIGTERM");
    const stale = await t.waitFor((s) => s.includes("agent not reachable") && s.includes("last data from"), "the stale state");
    expect(stale).toMatch(peerRow);
    expect(stale).not.toContain("control plane connected");
    expect(stale).not.toContain("health ok");
    expect(lineWith(await t.captureEscapes(), nodeId(b))).toMatch(sgr("2")); // dim
    a.startAgent();
    await t.waitFor((s) => !s.includes("agent not reachable") && peerRow.test(s) && s.includes("control plane connected"), "the peer row after the restart", 30_000);

    await t.keys("q");
    const end = await t.waitFor((s) => s.includes("MODES"), "top to exit");
    expect(end).toContain("TOP-EXITED rc=0");
    expect(end).toMatch(/^MODES icanon echo\s*$/m);
    expect(await t.cursorVisible()).toBe(true);
  });
});

describe("plexd top in tmux against a fake-backend node API", () => {
  let dir: string;
  let sock: string;
  let ac: AbortController;
  let server: NodeApiServer | undefined;
  const t = tmuxFor(`plexd-top-fake-${process.pid}`);

  beforeEach(async () => {
    if (!existsSync(cli)) throw new Error("dist/plexd.js missing: run `npm run build` first");
    dir = await mkdtemp(join(tmpdir(), "plexd-top-"));
    sock = join(dir, "api.sock");
    ac = new AbortController();
    server = (await startFakeNodeApi({ socketPath: sock, dataDir: dir, signal: ac.signal })).server;
  });

  afterEach(async () => {
    await t.kill();
    ac.abort();
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("at 160×45: every column, keys, the agent going away and back, q", async () => {
    await t.start(`node ${cli} top --socket ${sock} --interval 500ms; ${afterTop}`, { columns: 160, rows: 45 });
    const first = await t.waitFor((s) => s.includes("node_alpha") && s.includes("node_bravo"), "peer rows");
    expect(first).toContain("node_fake01");
    expect(first).toMatch(/node_alpha\s+alpha\s+10\.100\.0\.2\s+up\s+192\.0\.2\.2:51820/);
    expect(first.split("\n").find((l) => l.startsWith("PEER"))!.trim().split(/\s+/)).toEqual(["PEER▼", "HOST", "MESH", "IP", "STATE", "ENDPOINT", "HANDSHAKE", "RX", "TX", "RTT"]);
    expect(lineWith(await t.captureEscapes(), "node_alpha")).toMatch(colourSgr);

    await t.keys("/", "b", "r", "a", "Enter");
    await t.waitFor((s) => s.includes("filter: bra") && !s.includes("node_alpha"), "filtered table");
    await t.keys("Tab");
    await t.waitFor((s) => s.includes("plexd-input"), "firewall rules panel");

    await server!.close();
    server = undefined;
    await t.waitFor((s) => s.includes("agent not reachable"), "no-agent message");
    server = (await startFakeNodeApi({ socketPath: sock, dataDir: dir, signal: ac.signal })).server;
    await t.waitFor((s) => !s.includes("agent not reachable") && s.includes("plexd-input"), "reconnect");

    await t.keys("q");
    const end = await t.waitFor((s) => s.includes("MODES"), "exit");
    expect(end).toContain("TOP-EXITED rc=0");
  });

  it("NO_COLOR: no colour at all, and the selected tab still shows", async () => {
    await t.start(`NO_COLOR=1 node ${cli} top --socket ${sock} --interval 500ms; ${afterTop}`, { columns: 100, rows: 30 });
    await t.waitFor((s) => s.includes("node_alpha") && s.includes("[Peers]"), "peer rows");
    const screen = await t.captureEscapes();
    expect(screen).not.toMatch(colourSgr);
    expect(screen).toMatch(/\[Peers\] +Firewall rules/);
    await t.keys("q");
    expect(await t.waitFor((s) => s.includes("MODES"), "exit")).toContain("TOP-EXITED rc=0");
  });
});
