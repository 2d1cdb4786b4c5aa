// The privhelper socket gate, end to end: the built binary, real users, real connect(2).
import type { ChildProcess } from "node:child_process";
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { existsSync } from "node:fs";
import { build } from "esbuild";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WireGuardImpl } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { ensureBuilt, ensurePrivUsers, runAs, startPrivhelper, stopPrivhelper } from "./privhelper-util.js";

let work: string;
let sockDir: string;
let sock: string;
let helper: ChildProcess | undefined;
let users: { plexdUid: number; plexdGid: number; outsiderUid: number; outsiderGid: number };
let clientScript: string;

beforeAll(async () => {
  await ensureBuilt();
  users = await ensurePrivUsers();
  work = await mkdtemp(join(tmpdir(), "plexd-privsock-"));
  await chmod(work, 0o755); // the test users must be able to traverse to the socket dir
  sockDir = join(work, "run", "plexd-priv");
  sock = join(sockDir, "privhelper.sock");
  // A pre-existing directory with a lax mode must be tightened, not trusted.
  await mkdir(sockDir, { recursive: true, mode: 0o777 });
  await chmod(sockDir, 0o777);
  await writeFile(join(work, "config.yaml"), "mesh:\n  interface: plexd9\nsome_agent_key: ignored\n");

  // The real agent client, bundled into one file so it runs as another user without TS tooling.
  const entry = join(work, "client-entry.ts");
  await writeFile(
    entry,
    `import { probePrivhelper, connectPrivhelper } from ${JSON.stringify(join(process.cwd(), "agent/privclient/client.ts"))};
const path = process.argv[2];
const probe = await probePrivhelper(path);
const c = connectPrivhelper({ socketPath: path });
let info;
try { info = await c.getInfo({}); } catch (e) { info = { error: e.code }; } finally { c.close(); }
console.log(JSON.stringify({ probe: probe.ok ? { ok: true, pid: probe.info.pid } : probe, info: { pid: info.pid, allowed: info.allowedInterfaces, version: info.version, error: info.error, caps: info.capabilities, problems: info.problems } }));`,
  );
  clientScript = join(work, "client.mjs");
  await build({ entryPoints: [entry], bundle: true, platform: "node", format: "esm", target: "node20", outfile: clientScript, logLevel: "error", banner: { js: 'import { createRequire } from "node:module"; const require = createRequire(import.meta.url);' } });
  await chmod(clientScript, 0o644);

  helper = await startPrivhelper(["--config", join(work, "config.yaml"), "--socket", sock], sock);
});

afterAll(async () => {
  await stopPrivhelper(helper);
  if (work) await rm(work, { recursive: true, force: true });
});

describe("privhelper socket", () => {
  it("creates the directory root:plexd 0750 and the socket root:plexd 0660", async () => {
    const d = await stat(sockDir);
    expect(d.mode & 0o7777).toBe(0o750);
    expect([d.uid, d.gid]).toEqual([0, users.plexdGid]);
    const s = await stat(sock);
    expect(s.isSocket()).toBe(true);
    expect(s.mode & 0o7777).toBe(0o660);
    expect([s.uid, s.gid]).toEqual([0, users.plexdGid]);
  });

  it("refuses a process outside group plexd before any RPC runs (EACCES)", async () => {
    const script = `const s = require("node:net").connect(process.argv[1]); s.on("connect", () => { console.log("CONNECTED"); s.destroy(); }); s.on("error", (e) => console.log(e.code));`;
    // The directory is 0750 root:plexd, so even reaching the socket path is denied.
    const r = await runAs(users.outsiderUid, users.outsiderGid, ["-e", script, sock]);
    expect(r.stdout.trim()).toBe("EACCES");
    // and the real client reports it as permission denied, not as "not running"
    const c = await runAs(users.outsiderUid, users.outsiderGid, [clientScript, sock]);
    const out = JSON.parse(c.stdout) as { probe: { ok: boolean; code?: string }; info: { error?: string } };
    expect(out.probe.ok).toBe(false);
    expect(out.probe.code).toBe("permission_denied");
    expect(out.info.error).toBe("unavailable");
  });

  it("serves GetInfo to a member of group plexd through the agent client", async () => {
    const r = await runAs(users.plexdUid, users.plexdGid, [clientScript, sock]);
    const out = JSON.parse(r.stdout) as { probe: { ok: boolean; pid?: number }; info: { pid: number; allowed: string[]; version: string } };
    expect(out.probe).toEqual({ ok: true, pid: helper?.pid });
    expect(out.info.pid).toBe(helper?.pid);
    expect(out.info.allowed).toEqual(["plexd9"]);
    expect(out.info.version).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("detects this host's capabilities for real", async () => {
    const r = await runAs(users.plexdUid, users.plexdGid, [clientScript, sock]);
    const { caps, problems } = (JSON.parse(r.stdout) as { info: { caps: Record<string, unknown>; problems: string[] } }).info;
    const which = async (b: string) => (await execa("which", [b], { reject: false })).stdout.trim();
    const nftOk = (await execa("nft", ["list", "tables"], { reject: false })).exitCode === 0;
    expect([WireGuardImpl.KERNEL, WireGuardImpl.USERSPACE]).toContain(caps.wireguard);
    if (caps.wireguard === WireGuardImpl.USERSPACE) expect(caps.wireguardGoPath).toBe(await which("wireguard-go"));
    expect(caps.wgTool).toBe((await which("wg")) !== "");
    expect(caps.nftables).toBe(nftOk);
    expect(caps.tun).toBe(existsSync("/dev/net/tun"));
    // Only what today's RPCs rely on is detected and reported.
    expect(problems.some((p) => p.includes("nftables"))).toBe(!nftOk);
    expect(problems.some((p) => p.includes("wg (wireguard-tools)"))).toBe(!caps.wgTool);
  });

  it("refuses to start a second privhelper on a live socket and leaves the first serving", async () => {
    const second = await execa("dist/plexd-privhelper.js", ["--config", join(work, "config.yaml"), "--socket", sock], { reject: false, timeout: 20_000 });
    expect(second.exitCode).toBe(1);
    expect(second.stderr).toContain("already serving");
    const r = await runAs(users.plexdUid, users.plexdGid, [clientScript, sock]);
    expect((JSON.parse(r.stdout) as { info: { pid: number } }).info.pid).toBe(helper?.pid);
  });

  it("reports a missing socket as unavailable", async () => {
    const r = await runAs(users.plexdUid, users.plexdGid, [clientScript, join(work, "nope.sock")]);
    const out = JSON.parse(r.stdout) as { probe: { ok: boolean; code: string; message: string } };
    expect(out.probe.ok).toBe(false);
    expect(out.probe.code).toBe("unavailable");
    expect(out.probe.message).toContain("missing");
  });
});
