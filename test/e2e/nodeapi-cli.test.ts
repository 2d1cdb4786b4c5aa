import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { startFakeNodeApi, type FakeBackend } from "../support/nodeapi-fake-backend.js";
import { loadPeerCredAddon } from "../../proto/lib/peercred.js";
import { grpcHealthCheck } from "../support/grpc-health-probe.js";
import { schemaViolations } from "../support/json-schema.js";

// The built `plexd` client (dist/plexd.js, `npm run build`) against a node API server with a
// fake backend: human output, `-o json` = the response message JSON, exit codes (cli/exit-codes.ts).
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

const statusSchema = join(repo, "docs/schema/status.schema.json");
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
    const curl = await execa("curl", ["-sS", "--unix-socket", sock, "http://localhost/v1/agent/status?peers=true"]);
    const a = JSON.parse(json.stdout) as Record<string, unknown>;
    const b = JSON.parse(curl.stdout) as Record<string, unknown>;
    // Same message over gRPC and REST, apart from what the clock moves (uptime, handshake ages).
    const still = (m: Record<string, unknown>) => ({ ...m, uptime: "", peers: (m.peers as Record<string, unknown>[]).map((p) => ({ ...p, handshake_age_seconds: 0 })) });
    expect(still(a)).toEqual(still(b));
    expect(a.state_counts).toEqual({ metadata: 2, data: 1, secrets: 1, reports: 0, reports_pending: 0 });
  });

  it("status -o json: one document with self and peers, valid against the shipped JSON Schema", async () => {
    const json = await plexd(["status", "-o", "json"]);
    expect(json.exitCode).toBe(0);
    expect(await schemaViolations(statusSchema, json.stdout)).toEqual([]);
    const doc = JSON.parse(json.stdout) as { self: unknown; peers: { peer_id: string; hostname: string; handshake_age_seconds?: number }[]; health_status: string };
    expect(doc.self).toMatchObject({ node_id: "node_fake01", hostname: "fake01", mesh_ip: "10.100.0.1", interface: "plexd0", listen_port: 51820 });
    expect(doc.peers.map((p) => p.peer_id)).toEqual(["node_alpha", "node_bravo"]);
    expect(doc.peers[0]).toMatchObject({ hostname: "alpha", handshake_age_seconds: expect.any(Number) as number });
    expect(doc.peers[1]).not.toHaveProperty("handshake_age_seconds");
    expect(doc.health_status).toBe("healthy");
    // The schema is no rubber stamp: a wrong type and an undocumented field are both caught.
    const bad = JSON.stringify({ ...JSON.parse(json.stdout), peer_count: "2", surprise: true });
    expect(await schemaViolations(statusSchema, bad)).toEqual([": Additional properties are not allowed ('surprise' was unexpected)", "peer_count: '2' is not of type 'integer'"]);
  });

  it("status --check: exit 0 while healthy, 1 when degraded or unhealthy; plain status stays 0", async () => {
    expect((await plexd(["status", "--check"])).exitCode).toBe(0);
    backend.setStatus({ health: [{ code: "heartbeat_failing", severity: "warning", text: "heartbeat failed", since: Date.now() }] });
    expect((await plexd(["status", "--check"])).exitCode).toBe(1);
    expect((await plexd(["status"])).exitCode).toBe(0);
    expect((await plexd(["status"])).stdout).toMatch(/^Health\s+degraded$/m);
  });

  it("health: GET /v1/health and grpc.health.v1 through a grpc-js client follow the conditions", async () => {
    const health = async () => {
      const r = await execa("curl", ["-sS", "-w", "\n%{http_code}", "--unix-socket", sock, "http://localhost/v1/health"]);
      const [body, code] = r.stdout.split("\n");
      return { code: Number(code), body: JSON.parse(body ?? "{}") as { status: string; phase: string; conditions: { code: string }[] } };
    };
    expect(await health()).toEqual({ code: 200, body: { status: "healthy", phase: "running", conditions: [] } });
    expect(await grpcHealthCheck(sock)).toBe("SERVING");
    expect(await grpcHealthCheck(sock, "plexd.node.v1.AgentService")).toBe("SERVING");
    expect(await grpcHealthCheck(sock, "no.such.Service")).toBe("error 5"); // NOT_FOUND, as the protocol says

    backend.setStatus({ health: [{ code: "heartbeat_failing", severity: "warning", text: "heartbeat failed", since: Date.now() }] });
    expect((await health()).code).toBe(200); // degraded still serves
    expect(await grpcHealthCheck(sock)).toBe("SERVING");
    backend.setStatus({ health: [{ code: "privhelper_unavailable", severity: "critical", text: "privhelper unavailable", since: Date.now() }] });
    const down = await health();
    expect(down.code).toBe(503);
    expect(down.body).toMatchObject({ status: "unhealthy", conditions: [{ code: "privhelper_unavailable" }] });
    expect(await grpcHealthCheck(sock)).toBe("NOT_SERVING");
  });

  it("scripting: the socket from --config, global flags in every help, -o json for config check, completion", async () => {
    const cfg = join(dir, "config.yaml");
    await writeFile(cfg, `api: https://cp.example.com\nnode_api:\n  socket: ${sock}\n`);
    const viaConfig = await execa("node", [cli, "--config", cfg, "status"], { reject: false, env: { PLEXD_NODE_API_SOCKET: "" } });
    expect(viaConfig.exitCode, viaConfig.stderr).toBe(0);
    expect(viaConfig.stdout).toContain("node_fake01");
    // --socket still wins over the file.
    expect((await execa("node", [cli, "--config", cfg, "--socket", join(dir, "none.sock"), "status"], { reject: false })).exitCode).toBe(3);

    const help = await execa("node", [cli, "peers", "--help"], { reject: false });
    const globalPart = help.stdout.slice(help.stdout.indexOf("Global Options:"));
    for (const flag of ["-o, --output <format>", "--socket <path>", "--config <file>"]) expect(globalPart).toContain(flag);

    // A node API socket outside /run/plexd is a finding of its own; the client still used it above.
    expect(JSON.parse((await execa("node", [cli, "-o", "json", "config", "check", cfg], { reject: false })).stdout)).toMatchObject({ ok: false, issues: [{ path: "node_api.socket" }] });
    await writeFile(cfg, "api: https://cp.example.com\n");
    const check = await execa("node", [cli, "-o", "json", "config", "check", cfg], { reject: false });
    expect(check.exitCode).toBe(0);
    expect(JSON.parse(check.stdout)).toEqual({ file: cfg, ok: true, issues: [] });
    await writeFile(cfg, "api: https://cp.example.com\nmesh:\n  listen_port: 0\n");
    const bad = await execa("node", [cli, "config", "check", cfg, "-o", "json"], { reject: false });
    expect(bad.exitCode).toBe(2);
    expect(JSON.parse(bad.stdout)).toMatchObject({ ok: false, issues: [{ path: "mesh.listen_port" }] });

    // bash completes subcommands and their flags from the script plexd prints.
    const script = (await execa("node", [cli, "completion", "bash"])).stdout;
    await writeFile(join(dir, "plexd.bash"), script);
    const complete = async (...words: string[]) =>
      (
        await execa("bash", ["-c", `source ${join(dir, "plexd.bash")}; COMP_WORDS=(plexd ${words.join(" ")}); COMP_CWORD=${words.length}; _plexd_complete; printf '%s\\n' "\${COMPREPLY[@]}"`])
      ).stdout.split("\n");
    expect((await complete("sta")).sort()).toEqual(["state", "status"]);
    expect(await complete("status", "--ch")).toEqual(["--check"]);
    expect(await complete("state", "")).toEqual(expect.arrayContaining(["get", "report"]));
    expect(await complete("-o", "")).toEqual(["text", "json"]);
    for (const shell of ["zsh", "fish"]) expect((await execa("node", [cli, "completion", shell])).stdout).toContain("status");
    expect((await execa("node", [cli, "completion", "tcsh"], { reject: false })).exitCode).toBe(2);
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
    // plane answers 404; without them the call is denied (docs/node-api.md).
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
