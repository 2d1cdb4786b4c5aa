// RunSandboxed: one hook run, as its user, in the sandbox its definition names. The file is checked and hashed by openHook and executed
// from that same descriptor (fd 3 of the child, /proc/self/fd/3). Tools do the isolation — bubblewrap (mount + PID namespaces, read-only
// root, writable paths bound, fresh /dev and /proc) and setpriv (the user, no new privileges, no capabilities), or crun with a bundle of
// the same (os/oci-bundle.ts) for `container` — started with argument arrays, never a shell; parameters reach the hook only as PLEXD_*
// environment variables. At the timeout, or when the caller cancels, every process of the hook gets SIGTERM, and SIGKILL 5 s later.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { RunSandboxedRequest, RunSandboxedResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import { CappedBuffer } from "../../proto/lib/output-cap.js";
import type { CallContext } from "../adapter.js";
import type { PrivConfig } from "../config.js";
import type { Logger } from "../log.js";
import { createHookCgroup } from "../os/cgroup.js";
import type { Host } from "../os/host.js";
import { standardDevices, writeBundle } from "../os/oci-bundle.js";
import type { Runner } from "../os/run.js";
import { openHook } from "./hook-file.js";

const killGraceMs = 5000;
const safePath = (p: string, under = "/") => p.startsWith(under) && !p.split("/").includes("..") && !p.includes("\0");
const bad = (m: string) => new PlexdError("invalid_argument", m);

function validate(req: RunSandboxedRequest): void {
  if (!["none", "namespaced", "container"].includes(req.sandbox)) throw bad(`unknown sandbox ${JSON.stringify(req.sandbox)}`);
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(req.user)) throw bad(`invalid user name ${JSON.stringify(req.user)}`);
  if (req.timeoutMs < 1 || req.timeoutMs > 86_400_000) throw bad("timeout_ms must be 1 ms to 24 h");
  if (req.maxOutputBytes < 1024 || req.maxOutputBytes > 4 * 1024 * 1024) throw bad("max_output_bytes must be 1 KiB to 4 MiB");
  for (const [k, v] of Object.entries(req.env)) if (!/^PLEXD_[A-Z0-9_]{1,128}$/.test(k) || v.includes("\0")) throw bad(`environment variable ${JSON.stringify(k)} not allowed`);
  for (const p of req.writablePaths) if (!safePath(p)) throw bad(`writable path must be absolute: ${JSON.stringify(p)}`);
  for (const d of req.allowedDevices) if (!safePath(d, "/dev/")) throw bad(`device must lie under /dev: ${JSON.stringify(d)}`);
  if (!(req.cpu >= 0 && req.cpu <= 1024)) throw bad("cpu must be 0 to 1024 cores");
  if (!["", "none", "host"].includes(req.network)) throw bad(`network must be none or host, not ${JSON.stringify(req.network)}`);
  for (const c of req.capabilities) if (!/^CAP_[A-Z_]{2,32}$/.test(c)) throw bad(`not a capability name: ${JSON.stringify(c)}`);
}

/** uid, gid and home of `user`: /etc/passwd first (no process to start), else NSS (LDAP, sssd). */
async function account(runner: Runner, user: string): Promise<{ uid: string; gid: string; home: string }> {
  const local = (await readFile("/etc/passwd", "utf8").catch(() => "")).split("\n").find((l) => l.startsWith(`${user}:`));
  const r = local === undefined ? await runner.run("getent", ["passwd", user], { allowFailure: true, timeoutMs: 5000 }) : { exitCode: 0, stdout: local };
  const f = r.stdout.trim().split(":");
  if (r.exitCode !== 0 || f.length < 7) throw new PlexdError("failed_precondition", `user ${user} does not exist`);
  return { uid: f[2]!, gid: f[3]!, home: f[5]! };
}

const commOf = async (pid: number): Promise<string> => (await readFile(`/proc/${pid}/comm`, "utf8").catch(() => "")).trim();

async function groupMembers(pgid: number): Promise<number[]> {
  const out = [];
  for (const pid of (await readdir("/proc")).filter((e) => /^\d+$/.test(e))) {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
    if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]) === pgid) out.push(Number(pid));
  }
  return out;
}

/** A fresh bundle directory for a `container` run (0700, in privhelper's own /tmp). */
async function containerBundle(runner: Runner, req: RunSandboxedRequest, who: { uid: string; gid: string }, env: Record<string, string>): Promise<string> {
  // Supplementary groups as setpriv --init-groups would give them (NSS included).
  const ids = await runner.run("id", ["-G", req.user], { allowFailure: true, timeoutMs: 5000 });
  const groups = ids.exitCode === 0 ? ids.stdout.trim().split(/\s+/).map(Number).filter(Number.isInteger) : [Number(who.gid)];
  const box = await mkdtemp(join(tmpdir(), "plexd-hook-"));
  try {
    await writeBundle(box, { uid: Number(who.uid), gid: Number(who.gid), groups, env, writablePaths: req.writablePaths, allowedDevices: req.allowedDevices, mountProc: true, network: req.network === "host" ? "host" : "none", capabilities: req.capabilities });
  } catch (err) {
    await rm(box, { recursive: true, force: true });
    throw new PlexdError("failed_precondition", `sandbox_unavailable: container bundle: ${PlexdError.from(err).message}`);
  }
  return box;
}

export function makeRunSandboxed(deps: { config: PrivConfig; runner: Runner; host: Host; log: Logger }) {
  return async (req: RunSandboxedRequest, ctx: CallContext): Promise<MessageInitShape<typeof RunSandboxedResponseSchema>> => {
    validate(req);
    const [setpriv, bwrap, crun] = await Promise.all([deps.host.which("setpriv"), req.sandbox === "namespaced" ? deps.host.which("bwrap") : undefined, req.sandbox === "container" ? deps.host.which("crun") : undefined]);
    if (req.sandbox === "container" && crun === undefined) throw new PlexdError("failed_precondition", "sandbox_unavailable: the container sandbox needs crun (an OCI runtime), which is not installed");
    if (req.sandbox === "container" && req.image !== "") throw new PlexdError("failed_precondition", `sandbox_unavailable: container images are not supported (image ${JSON.stringify(req.image)}); an empty image runs on the host's root file system, read-only`);
    if (setpriv === undefined || (req.sandbox === "namespaced" && bwrap === undefined)) throw new PlexdError("failed_precondition", `sandbox_unavailable: ${setpriv === undefined ? "setpriv" : "bwrap (bubblewrap)"} is not installed`);
    const [acct, opened] = await Promise.allSettled([account(deps.runner, req.user), openHook(deps.config, req.path)]);
    if (opened.status === "rejected") throw opened.reason;
    const hook = opened.value;
    try {
      if (acct.status === "rejected") throw acct.reason;
      const who = acct.value;
      if (hook.checksum !== req.checksum) throw new PlexdError("failed_precondition", `integrity_violation: checksum ${hook.checksum}, expected ${req.checksum}`);
      const limited = req.cpu > 0 || req.memoryBytes > 0n;
      // Without limits the namespaced and container sandboxes need no cgroup: the end of their PID namespace's first process ends every
      // process in it. `none` uses one, where it can be had, for the kill that reaches a hook's processes however they forked.
      const cgroupName = `run-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
      const cgroup = req.sandbox !== "none" && !limited ? undefined : await createHookCgroup(cgroupName, req).catch((err: unknown) => {
        const message = PlexdError.from(err).message;
        if (limited) throw new PlexdError("failed_precondition", message.startsWith("sandbox_unavailable") ? message : `sandbox_unavailable: no cgroup for the hook's resources: ${message}`);
        // A read-only cgroup file system (systemd's ProtectControlGroups=): the process group alone.
        deps.log.warn({ err: message }, "hook runs without a cgroup");
        return undefined;
      });
      const drop = ["--reuid", who.uid, "--regid", who.gid, "--init-groups", "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--", "/proc/self/fd/3"];
      const env = { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", HOME: who.home, ...req.env };
      // container: a private bundle directory per run, crun's state inside it, removed after.
      const box = crun === undefined ? undefined : await containerBundle(deps.runner, req, who, env);
      const crunArgs = (...a: string[]) => ["--root", join(box!, "state"), ...a];
      // A tmpfs /dev with the devices bound in: bubblewrap's own --dev (devpts, shm) takes twice as long to set up.
      const devices = [...standardDevices, ...req.allowedDevices].flatMap((d) => ["--dev-bind", d, d]);
      const binds = ["--ro-bind", "/", "/", ...req.writablePaths.flatMap((p) => ["--bind", p, p]), "--tmpfs", "/dev", ...devices];
      const bwrapArgs = [...binds, ...(req.mountProc ? ["--proc", "/proc"] : []), "--unshare-pid", "--die-with-parent", "--chdir", "/", "--", setpriv, ...drop];
      const crunRun = box === undefined ? [] : crunArgs("--cgroup-manager=disabled", "run", "--bundle", box, "--preserve-fds", "1", basename(box));
      const [file, args] = req.sandbox === "none" ? [setpriv, drop] : box === undefined ? [bwrap!, bwrapArgs] : [crun!, crunRun];
      // The container's first process is the hook (PID 1 of its namespace): crun signals it.
      const crunKill = (sig: string) => (box === undefined ? Promise.resolve() : deps.runner.run(crun!, crunArgs("kill", basename(box), sig), { allowFailure: true, timeoutMs: 5000 }).then(() => undefined));
      const child = spawn(file, args, { cwd: "/", env, detached: true, stdio: ["ignore", "pipe", "pipe", hook.fh.fd] });
      const pid = child.pid;
      if (pid !== undefined) await cgroup?.add(pid).catch(() => undefined);
      const out = [new CappedBuffer(req.maxOutputBytes), new CappedBuffer(req.maxOutputBytes)] as const;
      child.stdout!.on("data", (c: Buffer) => out[0].push(c));
      child.stderr!.on("data", (c: Buffer) => out[1].push(c));
      let timedOut = false;
      let killTimer: NodeJS.Timeout | undefined;
      const stop = (why: "timeout" | "cancelled"): void => {
        if (killTimer !== undefined || pid === undefined) return;
        timedOut = why === "timeout";
        deps.log.info({ path: hook.realPath, pid, why }, "hook stopped: SIGTERM, SIGKILL in 5 s");
        // The sandbox's own bwrap and crun processes are spared the SIGTERM: their end would SIGKILL the hook at once.
        void Promise.all([groupMembers(pid), cgroup?.pids() ?? [], crunKill("TERM")]).then(async ([group, inCgroup]) => {
          for (const p of new Set([...group, ...inCgroup])) if (!["bwrap", "crun"].includes(await commOf(p))) deps.host.kill(p, "SIGTERM");
        });
        killTimer = setTimeout(() => {
          void crunKill("KILL").finally(() => deps.host.kill(-pid, "SIGKILL"));
          void cgroup?.kill();
        }, killGraceMs);
      };
      const timer = setTimeout(() => stop("timeout"), req.timeoutMs);
      const onCancel = (): void => stop("cancelled");
      ctx.signal.addEventListener("abort", onCancel, { once: true });
      // A failed spawn ("error") rejects.
      const closed = once(child, "close") as Promise<[number | null, NodeJS.Signals | null]>;
      const [code, signal] = await closed.finally(() => {
        clearTimeout(timer);
        clearTimeout(killTimer);
        ctx.signal.removeEventListener("abort", onCancel);
      });
      // Whatever the hook left behind (a daemon it started) ends with it.
      await cgroup?.kill();
      for (let i = 0; i < 50 && cgroup !== undefined && (await cgroup.pids()).length > 0; i++) await deps.host.sleep(20);
      await cgroup?.remove().catch((err: unknown) => deps.log.warn({ cgroup: cgroup.path, err: PlexdError.from(err).message }, "hook cgroup not removed"));
      if (box !== undefined) {
        await deps.runner.run(crun!, crunArgs("delete", "--force", basename(box)), { allowFailure: true, timeoutMs: 10_000 });
        await rm(box, { recursive: true, force: true });
      }
      deps.log.info({ path: hook.realPath, user: req.user, sandbox: req.sandbox, exit_code: code, signal, timed_out: timedOut }, "hook ran");
      return { exitCode: timedOut || code === null ? -1 : code, stdout: out[0].text(), stderr: out[1].text(), timedOut, signal: signal ?? "" };
    } finally {
      await hook.fh.close();
    }
  };
}
