// Hook cgroups under plexd-hooks.slice in the cgroup v2 hierarchy, when one is mounted: the limits of a hook's `resources`, and a kill that
// reaches every process of the hook however it forked (cgroup.kill). Without cgroup v2 a hook runs without them; one that asks for limits
// then cannot run (sandbox_unavailable).
import { mkdir, readdir, readFile, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

async function cgroup2Root(): Promise<string | undefined> {
  const mounts = await readFile("/proc/self/mounts", "utf8").catch(() => "");
  return mounts.split("\n").map((l) => l.split(" ")).find((f) => f[2] === "cgroup2")?.[1];
}

export const hooksSlice = "plexd-hooks.slice";

/** A fresh cgroup named `name`, or undefined without cgroup v2; throws when `limits` cannot be had. */
export async function createHookCgroup(name: string, limits: { cpu: number; memoryBytes: bigint }, at?: string) {
  const root = at ?? (await cgroup2Root());
  const wanted = [...(limits.cpu > 0 ? ["cpu"] : []), ...(limits.memoryBytes > 0n ? ["memory"] : [])];
  const available = root === undefined ? [] : (await readFile(join(root, "cgroup.controllers"), "utf8").catch(() => "")).trim().split(/\s+/);
  const missing = wanted.filter((c) => !available.includes(c));
  if (missing.length > 0) throw new Error(`sandbox_unavailable: no cgroup v2 ${missing.join(" and ")} controller for the hook's resources`);
  if (root === undefined) return undefined;
  const slice = join(root, hooksSlice);
  await mkdir(slice, { recursive: true });
  // A controller reaches a cgroup only when every ancestor enables it for its children.
  if (wanted.length > 0) for (const dir of [root, slice]) await writeFile(join(dir, "cgroup.subtree_control"), wanted.map((c) => `+${c}`).join(" "));
  const path = join(slice, name);
  await mkdir(path);
  // cpu.max is "<quota> <period>": cores × period.
  if (limits.cpu > 0) await writeFile(join(path, "cpu.max"), `${Math.max(1000, Math.round(limits.cpu * 100_000))} 100000`);
  if (limits.memoryBytes > 0n) await writeFile(join(path, "memory.max"), String(limits.memoryBytes));
  return {
    path,
    add: (pid: number) => writeFile(join(path, "cgroup.procs"), String(pid)),
    pids: async () => (await readFile(join(path, "cgroup.procs"), "utf8").catch(() => "")).split("\n").filter((l) => l !== "").map(Number),
    kill: () => writeFile(join(path, "cgroup.kill"), "1").catch(() => undefined),
    // Only an empty cgroup can be removed: the caller waits for the processes to end first.
    remove: () => rmdir(path),
  };
}

/** Removes plexd-hooks.slice (Teardown, --cleanup); true when there was one. The per-run cgroups go when their
 * hook ends, so one still there belongs to a hook that is running and keeps the slice (rmdir: EBUSY). */
export async function removeHooksSlice(at?: string): Promise<boolean> {
  const root = at ?? (await cgroup2Root());
  if (root === undefined) return false;
  const slice = join(root, hooksSlice);
  const runs = await readdir(slice, { withFileTypes: true }).catch(() => undefined);
  if (runs === undefined) return false;
  try {
    // An empty per-run cgroup (its privhelper died before removing it) goes first.
    for (const r of runs.filter((e) => e.isDirectory())) await rmdir(join(slice, r.name));
    await rmdir(slice);
    return true;
  } catch (err) {
    // A read-only cgroup file system (systemd's ProtectControlGroups=): this privhelper made no slice.
    if ((err as NodeJS.ErrnoException).code === "EROFS") return false;
    throw err;
  }
}
