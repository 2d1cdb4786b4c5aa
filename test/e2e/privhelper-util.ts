// Shared by the privhelper e2e tests: build freshness, system users, starting/stopping the
// built binary by PID, and running a node script as another uid.
import { spawn, type ChildProcess } from "node:child_process";
import { chmod, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { build } from "esbuild";
import { execa } from "execa";
import nodeFlags from "../../scripts/node-flags.json" with { type: "json" };

export const privhelperBin = "dist/plexd-privhelper.js";

async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile() || !e.name.endsWith(".ts")) continue;
    newest = Math.max(newest, (await stat(join(e.parentPath, e.name))).mtimeMs);
  }
  return newest;
}

/** Rebuild the bundles when the privhelper bundle is missing or older than its sources. */
export async function ensureBuilt(): Promise<void> {
  const built = await stat(privhelperBin).then((s) => s.mtimeMs).catch(() => 0);
  const sources = Math.max(await newestMtime("privhelper"), await newestMtime("proto"));
  if (built >= sources) return;
  await execa("npm", ["run", "gen"], { timeout: 60_000 });
  // Only the privhelper entry, with scripts/build.mjs's options: the full build also
  // bundles the other processes, whose breakage must not hide a privhelper result.
  await build({
    entryPoints: ["privhelper/main.ts"],
    outfile: privhelperBin,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    sourcemap: "linked",
    // Dependencies bundled too, as scripts/build.mjs does for privhelper.
    logLevel: "warning",
    // The same first line as scripts/build.mjs writes: privhelper's V8 flags (scripts/node-flags.json).
    banner: { js: `#!/usr/bin/env -S node ${nodeFlags["plexd-privhelper"].join(" ")}\nimport { createRequire as __plexdCreateRequire } from "node:module";\nconst require = __plexdCreateRequire(import.meta.url);` },
  });
  await chmod(privhelperBin, 0o755);
}

async function idOf(kind: "-u" | "-g", name: string): Promise<number | undefined> {
  const r = await execa("id", [kind, name], { reject: false });
  return r.exitCode === 0 ? Number(r.stdout.trim()) : undefined;
}

/**
 * System group/user `plexd` and an unrelated user `plexd-outsider`, created idempotently
 * (a shared ensureSystemUsers() in test/e2e/harness/ may replace this).
 */
export async function ensurePrivUsers(): Promise<{ plexdUid: number; plexdGid: number; outsiderUid: number; outsiderGid: number }> {
  if ((await execa("getent", ["group", "plexd"], { reject: false })).exitCode !== 0) await execa("groupadd", ["--system", "plexd"], { reject: false });
  if ((await idOf("-u", "plexd")) === undefined) {
    await execa("useradd", ["--system", "--gid", "plexd", "--no-create-home", "--shell", "/usr/sbin/nologin", "plexd"], { reject: false });
  }
  if ((await idOf("-u", "plexd-outsider")) === undefined) {
    await execa("useradd", ["--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", "plexd-outsider"], { reject: false });
  }
  const ids = {
    plexdUid: await idOf("-u", "plexd"),
    plexdGid: Number((await execa("getent", ["group", "plexd"])).stdout.split(":")[2]),
    outsiderUid: await idOf("-u", "plexd-outsider"),
    outsiderGid: await idOf("-g", "plexd-outsider"),
  };
  if (ids.plexdUid === undefined || ids.outsiderUid === undefined || ids.outsiderGid === undefined) throw new Error("could not create test users");
  // The outsider must really be outside: no supplementary membership in plexd.
  const groups = (await execa("id", ["-G", "plexd-outsider"])).stdout.split(" ").map(Number);
  if (groups.includes(ids.plexdGid)) throw new Error("plexd-outsider is a member of group plexd");
  return { plexdUid: ids.plexdUid, plexdGid: ids.plexdGid, outsiderUid: ids.outsiderUid, outsiderGid: ids.outsiderGid };
}

/** Run `node ARGS` as uid:gid (no supplementary groups beyond gid). */
export async function runAs(uid: number, gid: number, args: string[]): Promise<{ stdout: string; stderr: string; exitCode: number | undefined }> {
  const r = await execa("node", args, { uid, gid, reject: false, timeout: 30_000, cwd: "/" });
  return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode };
}

async function waitFor(cond: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Start the built privhelper and wait until its socket exists with its final mode. */
export async function startPrivhelper(args: string[], socketPath: string, prefix: string[] = []): Promise<ChildProcess> {
  // `ip netns exec` execs the command, so the child's PID is privhelper's own.
  // Run as systemd runs it: the bundle itself, whose first line carries privhelper's V8 flags.
  const argv = [...prefix, privhelperBin, "--log-level", "debug", ...args];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "inherit", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
    if (process.env.PLEXD_TEST_VERBOSE) process.stderr.write(d);
  });
  try {
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`privhelper exited ${child.exitCode}: ${stderr}`);
      return stderr.includes("privhelper listening") && (await stat(socketPath).then((s) => (s.mode & 0o777) === 0o660).catch(() => false));
    }, "privhelper socket");
  } catch (err) {
    await stopPrivhelper(child);
    throw err;
  }
  return child;
}

/** SIGTERM by PID (SIGKILL after 5s); resolves when it has exited. */
export async function stopPrivhelper(child: ChildProcess | undefined, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (!child || child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill(signal);
  const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
}

/** Whether a privhelper started with startPrivhelper is still running. */
export function isRunning(child: ChildProcess | undefined): child is ChildProcess {
  return child !== undefined && child.exitCode === null && child.signalCode === null;
}
