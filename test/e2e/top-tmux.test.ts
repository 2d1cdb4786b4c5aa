import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startFakeNodeApi } from "../../agent/nodeapi/fake-backend.js";
import type { NodeApiServer } from "../../agent/nodeapi/server.js";

// `plexd top` in a real terminal (tmux) against a fake-backend node API started in this
// process: peer rows appear, keys work, the agent going away is shown and survived, `q` exits.

const repo = resolve(import.meta.dirname, "../..");
const cli = join(repo, "dist/plexd.js");
let dir: string;
let sock: string;
let session: string;
let ac: AbortController;
let server: NodeApiServer | undefined;

const tmux = (...args: string[]) => execa("tmux", args, { reject: false });
const capture = async (): Promise<string> => (await tmux("capture-pane", "-p", "-t", session)).stdout;

async function waitFor(pred: (screen: string) => boolean, what: string, ms = 15_000): Promise<string> {
  const end = Date.now() + ms;
  let screen = "";
  while (Date.now() < end) {
    screen = await capture();
    if (pred(screen)) return screen;
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`timed out waiting for ${what}; screen:\n${screen}`);
}

beforeEach(async () => {
  if (!existsSync(cli)) throw new Error("dist/plexd.js missing: run `npm run build` first");
  dir = await mkdtemp(join(tmpdir(), "plexd-top-"));
  sock = join(dir, "api.sock");
  session = `plexd-top-${process.pid}-${Date.now()}`;
  ac = new AbortController();
  server = (await startFakeNodeApi({ socketPath: sock, dataDir: dir, signal: ac.signal })).server;
});

afterEach(async () => {
  await tmux("kill-session", "-t", session);
  ac.abort();
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("plexd top in tmux", () => {
  it("shows peers, reacts to keys, survives the agent going away, and quits on q", async () => {
    // The shell line prints a marker after top exits, so the pane shows the process ended.
    const cmd = `node ${cli} top --socket ${sock} --interval 500ms; echo "TOP-EXITED rc=$?"; sleep 60`;
    expect((await tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "30", cmd)).exitCode).toBe(0);
    const first = await waitFor((s) => s.includes("node_alpha") && s.includes("node_bravo"), "peer rows");
    expect(first).toContain("node_fake01");
    expect(first).toMatch(/node_alpha\s+10\.100\.0\.2\s+up/);

    await tmux("send-keys", "-t", session, "/", "b", "r", "a", "Enter");
    await waitFor((s) => s.includes("filter: bra") && !s.includes("node_alpha"), "filtered table");
    await tmux("send-keys", "-t", session, "Tab");
    await waitFor((s) => s.includes("plexd-input"), "firewall rules panel");

    await server!.close();
    server = undefined;
    await waitFor((s) => s.includes("agent not reachable"), "no-agent message");
    server = (await startFakeNodeApi({ socketPath: sock, dataDir: dir, signal: ac.signal })).server;
    await waitFor((s) => !s.includes("agent not reachable") && s.includes("plexd-input"), "reconnect");

    await tmux("send-keys", "-t", session, "q");
    const end = await waitFor((s) => s.includes("TOP-EXITED"), "exit");
    expect(end).toContain("TOP-EXITED rc=0");
  });
});
