import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { HOG_PROGRAM, startCpuHogs } from "../e2e/stress/cpu-hog.js";

// The e2e stress mode's hogs (PLEXD_E2E_STRESS=1): they must really burn CPU, end when told,
// and end by themselves when whoever started them dies without telling them.

/** User + system CPU time of a process in clock ticks (/proc/PID/stat fields 14 and 15). */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

const alive = (pid: number): boolean => existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));

async function until(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

describe("e2e stress CPU hogs", () => {
  it("burn CPU until stopped, then are gone", async () => {
    const hogs = await startCpuHogs(2);
    try {
      expect(hogs.pids).toHaveLength(2);
      const before = hogs.pids.map(cpuTicks);
      await new Promise((r) => setTimeout(r, 1000));
      // At 100 ticks/s even a hog sharing a busy CPU gets well over 5 ticks in a second.
      hogs.pids.forEach((pid, i) => expect(cpuTicks(pid) - before[i]!).toBeGreaterThan(5));
    } finally {
      await hogs.stop();
    }
    for (const pid of hogs.pids) expect(alive(pid)).toBe(false);
    await hogs.stop(); // idempotent
  });

  it("exits by itself when its parent dies without stopping it", async () => {
    // A shell stands in for a test runner killed with SIGKILL: it starts a hog and dies.
    const sh = spawn("sh", ["-c", 'node -e "$HOG" $$ & echo $!; exec sleep 60'], { env: { ...process.env, HOG: HOG_PROGRAM }, stdio: ["ignore", "pipe", "inherit"] });
    const hogPid = await new Promise<number>((resolve) => sh.stdout.once("data", (d: Buffer) => resolve(Number(d.toString().trim()))));
    expect(await until(() => alive(hogPid), 2000)).toBe(true);
    sh.kill("SIGKILL");
    expect(await until(() => !alive(hogPid), 10_000)).toBe(true);
  });

  it("refuses a count that is not a positive integer", async () => {
    await expect(startCpuHogs(0)).rejects.toThrow(/positive integer/);
  });
});
