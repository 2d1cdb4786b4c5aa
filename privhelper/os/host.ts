// Facts about the host privhelper consults (capability detection, process discovery), behind
// an interface so handlers can be unit-tested against a described host.
import { existsSync } from "node:fs";
import { access, constants, readdir, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";

export interface Host {
  exists(path: string): Promise<boolean>;
  /** Absolute path of an executable on PATH, or undefined. */
  which(name: string): Promise<string | undefined>;
  /** Every process as pid + argv. */
  processes(): Promise<{ pid: number; argv: string[] }[]>;
  netns(pid: number | "self"): Promise<string | undefined>;
  kill(pid: number, signal: NodeJS.Signals): boolean;
  sleep(ms: number): Promise<void>;
}

export const realHost: Host = {
  // A stat takes microseconds; the async form waits for libuv's thread pool, on every apply.
  exists: (path) => Promise.resolve(existsSync(path)),
  async which(name) {
    // A relative PATH entry is a hijack risk for a root process.
    const dirs = (process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":").filter((d) => d.startsWith("/"));
    for (const p of dirs.map((d) => join(d, name))) if (await access(p, constants.X_OK).then(() => true, () => false)) return p;
    return undefined;
  },
  async processes() {
    const pids = (await readdir("/proc")).filter((e) => /^\d+$/.test(e));
    // A process may exit while we look; kernel threads have an empty command line.
    const argv = await Promise.all(pids.map((pid) => readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")));
    return pids.flatMap((pid, i) => (argv[i] ? [{ pid: Number(pid), argv: argv[i].replace(/\0$/, "").split("\0") }] : []));
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
