// Filesystem facts privhelper consults (capability detection, process discovery), kept
// behind an interface so handlers can be unit-tested against a described host.
import { existsSync } from "node:fs";
import { access, constants, readdir, readFile, readlink } from "node:fs/promises";
import { delimiter, join } from "node:path";

export interface Host {
  exists(path: string): Promise<boolean>;
  /** Absolute path of an executable found on PATH, or undefined. */
  which(name: string): Promise<string | undefined>;
  /** Every process as pid + argv (from /proc/<pid>/cmdline). */
  processes(): Promise<{ pid: number; argv: string[] }[]>;
  /** Identity of a process's network namespace (readlink /proc/<pid>/ns/net). */
  netns(pid: number | "self"): Promise<string | undefined>;
  kill(pid: number, signal: NodeJS.Signals): boolean;
  sleep(ms: number): Promise<void>;
}

export const realHost: Host = {
  // A stat of a local path takes microseconds; the async form queues on libuv's thread pool
  // and came back after ~0.7 ms, on the hot path of every apply (which backend serves a device).
  exists: (path) => Promise.resolve(existsSync(path)),
  async which(name) {
    const dirs = (process.env.PATH ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").split(delimiter);
    for (const dir of dirs) {
      if (!dir.startsWith("/")) continue; // a relative PATH entry is a hijack risk for a root process
      const p = join(dir, name);
      try {
        await access(p, constants.X_OK);
        return p;
      } catch {
        // next directory
      }
    }
    return undefined;
  },
  async processes() {
    const out: { pid: number; argv: string[] }[] = [];
    for (const entry of await readdir("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const raw = await readFile(`/proc/${entry}/cmdline`, "utf8");
        if (raw === "") continue; // kernel threads and zombies
        out.push({ pid: Number(entry), argv: raw.replace(/\0$/, "").split("\0") });
      } catch {
        // process exited while we looked
      }
    }
    return out;
  },
  netns: (pid) => readlink(`/proc/${pid}/ns/net`).catch(() => undefined),
  kill(pid, signal) {
    try {
      process.kill(pid, signal);
      return true;
    } catch {
      return false;
    }
  },
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
};
