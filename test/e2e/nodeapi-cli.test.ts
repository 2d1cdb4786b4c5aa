import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { startFakeNodeApi, type FakeBackend } from "../support/nodeapi-fake-backend.js";
import { loadPeerCredAddon } from "../../proto/lib/peercred.js";

// The built `plexd` client (dist/plexd.js, `npm run build`) against a node API server with a
// fake backend: human output, `-o json` = the response message JSON, exit codes of §7.1.
// Each test gets a fresh server and state dir, so none sees what another wrote.

const repo = resolve(import.meta.dirname, "../..");
const cli = join(repo, "dist/plexd.js");
let dir: string;
let sock: string;
let backend: FakeBackend;
let ac: AbortController;
let close: () => Promise<void>;

beforeAll(() => {
  if (!existsSync(cli)) throw new Error("dist/plexd.js missing: run `npm run build` first");
});

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "plexd-cli-"));
  sock = join(dir, "api.sock");
  ac = new AbortController();
  const fake = await startFakeNodeApi({ socketPath: sock, dataDir: dir, signal: ac.signal });
  backend = fake.backend;
  close = () => fake.server.close();
});

afterEach(async () => {
  ac.abort();
  await close();
  await rm(dir, { recursive: true, force: true });
});

const plexd = (args: string[], input?: string) => execa("node", [cli, "--socket", sock, ...args], { reject: false, ...(input === undefined ? {} : { input }) });

describe("plexd client commands", () => {
  it("--version and version: the package version, the commit and the date the build stamped", async () => {
    const pkg = JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as { version: string };
    const line = await plexd(["--version"]);
    expect(line.exitCode).toBe(0);
    // Unbundled code says "dev": a hash and a date here prove scripts/build.mjs stamped them.
    expect(line.stdout).toMatch(new RegExp(`^plexd ${pkg.version.replaceAll(".", "\\.")} \\(commit [0-9a-f]{12}, built \\d{4}-\\d{2}-\\d{2}T[\\d:.]+Z\\)$`));
    const json = JSON.parse((await plexd(["version", "-o", "json"])).stdout) as Record<string, string>;
    expect(json).toMatchObject({ version: pkg.version, node: process.version });
    expect(line.stdout).toContain(`commit ${json.commit}, built ${json.build_date}`);
  });

  it("status: text and exact JSON", async () => {
    const text = await plexd(["status"]);
    expect(text.exitCode).toBe(0);
    expect(text.stdout).toMatch(/^Node\s+node_fake01\s+10\.100\.0\.1$/m);
    expect(text.stdout).toMatch(/^Control plane\s+connected/m);
    const json = await plexd(["status", "-o", "json"]);
    const curl = await execa("curl", ["-sS", "--unix-socket", sock, "http://localhost/v1/agent/status"]);
    const a = JSON.parse(json.stdout) as Record<string, unknown>;
    const b = JSON.parse(curl.stdout) as Record<string, unknown>;
    // Same message over gRPC and REST, apart from the clock-derived uptime.
    expect({ ...a, uptime: "" }).toEqual({ ...b, uptime: "" });
    expect(a.state_counts).toEqual({ metadata: 2, data: 1, secrets: 1, reports: 0, reports_pending: 0 });
  });

  it("peers, policies, state and state get", async () => {
    expect((await plexd(["peers"])).stdout.split("\n").map((l) => l.split(/\s+/)[0])).toEqual(["PEER", "node_alpha", "node_bravo"]);
    expect((await plexd(["peers", "--all"])).stdout).toMatch(/node_hidden .* no$/m);
    expect(JSON.parse((await plexd(["peers", "-o", "json"])).stdout).peers[0].rx_bytes).toBe("1000000");
    expect((await plexd(["policies", "--rules"])).stdout).toMatch(/r1a2b3c4\s+plexd-input\s+12/);
    expect((await plexd(["state"])).stdout).toContain("region = eu-west");
    expect((await plexd(["state", "get", "metadata", "role"])).stdout).toBe("web");
    expect(JSON.parse((await plexd(["-o", "json", "state", "get", "data", "app-config"])).stdout).entry.payload).toEqual({ replicas: 3 });
  });

  it("state report: put from --data and stdin, If-Match conflict, delete", async () => {
    const put = await plexd(["state", "report", "health", "--data", '{"ok":true}', "-o", "json"]);
    expect(put.exitCode).toBe(0);
    expect(JSON.parse(put.stdout).entry).toMatchObject({ key: "health", version: 1, payload: { ok: true }, content_type: "application/json" });
    const fromStdin = await plexd(["state", "report", "health", "--data-file", "-", "--if-match", "1"], '"degraded"');
    expect(fromStdin.stdout).toBe("report health is at version 2");
    const conflict = await plexd(["state", "report", "health", "--data", "1", "--if-match", "1"]);
    expect(conflict.exitCode).toBe(6);
    expect(conflict.stderr).toMatch(/aborted/);
    expect((await plexd(["state", "report", "health", "--data", "{oops"])).exitCode).toBe(2);
    expect((await plexd(["state", "report", "health"])).exitCode).toBe(2);
    expect((await plexd(["state", "report", "health", "--delete", "--if-match", "2"])).exitCode).toBe(0);
    expect((await plexd(["state", "get", "report", "health"])).exitCode).toBe(4);
  });

  it("exit codes: not found 4, permission 5, agent unreachable 3, usage 2", async () => {
    expect((await plexd(["state", "get", "metadata", "nope"])).exitCode).toBe(4);
    const secret = await plexd(["state", "get", "secret", "tls-cert"]);
    // With readable peer credentials and uid 0 the secrets class is granted and the fake control
    // plane answers 404; without them the call is denied (spec §6.1).
    const granted = loadPeerCredAddon() !== undefined && process.getuid!() === 0;
    expect(secret.exitCode).toBe(granted ? 4 : 5);
    expect((await plexd(["state", "get", "bogus", "k"])).exitCode).toBe(2);
    const gone = await execa("node", [cli, "--socket", join(dir, "missing.sock"), "status"], { reject: false });
    expect(gone.exitCode).toBe(3);
    expect(gone.stderr).toMatch(/agent not reachable/);
    expect((await plexd(["no-such-command"])).exitCode).toBe(2);
    const top = await plexd(["top"], "");
    expect(top.exitCode).toBe(2);
    expect(top.stderr).toContain("plexd status -o json");
  });

  it("watch streams events as JSON lines", async () => {
    const child = execa("node", [cli, "--socket", sock, "watch", "-o", "json", "--kind", "peer_down"], { reject: false });
    // Emit only once the CLI (a fresh node process: seconds on a loaded machine) has subscribed.
    await vi.waitFor(() => expect(backend.subscribers.events).toBeGreaterThan(0), { timeout: 30_000, interval: 20 });
    backend.emit({ kind: "peer_up", subject: "node_alpha", detail: "" });
    backend.emit({ kind: "peer_down", subject: "node_bravo", detail: "no handshake for 180s" });
    const line = await new Promise<string>((resolveLine) => child.stdout!.once("data", (d: Buffer) => resolveLine(d.toString())));
    child.kill("SIGINT");
    const res = await child;
    expect(JSON.parse(line.trim())).toMatchObject({ kind: "peer_down", subject: "node_bravo", detail: "no handshake for 180s" });
    expect(res.exitCode).toBe(0);
  });

  it("the client commands' bundle loads Ink and React only through import() (plexd status stays fast)", () => {
    const bundle = readFileSync(join(repo, "dist/plexd-cli.js"), "utf8");
    expect(bundle).not.toMatch(/^import .* from "(ink|react)(\/[^"]*)?";?$/m);
    expect(bundle).toContain('import("ink")');
  });

  it("plexd itself only dispatches, so plexd up never holds the client commands", () => {
    const entry = readFileSync(cli, "utf8");
    expect(entry).toContain("plexd-cli.js");
    expect(entry).toContain("plexd-agent.js");
    expect(entry).not.toMatch(/commander|@connectrpc|@bufbuild/);
  });
});
