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
    async start(cmd: string): Promise<void> {
      expect((await tmux("new-session", "-d", "-s", server, "-x", "120", "-y", "30", cmd)).exitCode).toBe(0);
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
      throw new Error(`timed out waiting for ${what}; screen:\n${screen}`);
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

  it("shows the mesh peer with a live handshake, survives an agent restart, and q restores the shell", async () => {
    const t = tmuxFor(`plexd-top-live-${process.pid}`);
    registerCleanup("tmux server (live top)", () => t.kill());
    // As user plexd, the way an operator in group plexd runs it.
    await t.start(`setpriv --reuid=plexd --regid=plexd --init-groups -- node ${cli} top --socket ${a.apiSocket} --interval 500ms; ${afterTop}`);
    const peerRow = new RegExp(`${nodeId(b)}\\s+${ip(meshIp(b))}\\s+up\\s+${ip(topo.node("tui2").ip)}:51820`);
    const first = await t.waitFor((s) => peerRow.test(s), "the peer row of the live mesh");
    expect(first).toContain(nodeId(a));
    expect(first).toMatch(/control plane connected/);
    expect(await t.cursorVisible()).toBe(false);
    await t.keys("Tab");
    await t.waitFor((s) => s.includes("plexd-mesh") && s.includes(`ip saddr ${meshIp(b)}`), "firewall rules of the live table");
    await t.keys("Tab");
    // The events feed is the live Watch stream: a policy change made now shows up there.
    await cp.client.setPolicies(nodeId(a), [{ id: "p2", rules }]);
    await t.waitFor((s) => s.includes("recent events") && /policy_changed\s+p2/.test(s), "the policy change in the events panel");
    await t.keys("Tab");

    // The agent stops (its socket goes) and comes back: top says so and recovers by itself.
    await a.agent!.kill("SIGTERM");
    await t.waitFor((s) => s.includes("agent not reachable"), "the no-agent message");
    a.startAgent();
    await t.waitFor((s) => !s.includes("agent not reachable") && peerRow.test(s), "the peer row after the restart", 30_000);

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

  it("shows peers, reacts to keys, survives the agent going away, and quits on q", async () => {
    await t.start(`node ${cli} top --socket ${sock} --interval 500ms; ${afterTop}`);
    const first = await t.waitFor((s) => s.includes("node_alpha") && s.includes("node_bravo"), "peer rows");
    expect(first).toContain("node_fake01");
    expect(first).toMatch(/node_alpha\s+10\.100\.0\.2\s+up/);

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
});
