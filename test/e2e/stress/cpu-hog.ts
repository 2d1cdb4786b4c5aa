import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";

// Busy-loop processes that keep CPUs saturated while the e2e suite runs (docs/testing.md#performance-targets: the
// suite must pass on a shared, busy machine). Each hog is a plain `node` child at normal
// priority — a niced hog would yield to the suite and prove nothing.

/**
 * The hog's own program; its argument is the PID of the process that starts it. It spins in
 * short slices and, between slices, checks that this is still its parent: if the runner is
 * killed outright (SIGKILL, OOM) the kernel re-parents the hog and it exits by itself instead
 * of burning a CPU forever. The PID comes as an argument rather than from process.ppid at
 * start, because a runner that dies while the hog boots would otherwise never be noticed.
 */
export const HOG_PROGRAM = `
const parent = Number(process.argv[1]);
for (;;) {
  for (let i = 0; i < 1e7; i++);
  if (process.ppid !== parent) process.exit(0);
}
`;

export interface CpuHogs {
  readonly pids: readonly number[];
  /** Ends exactly these hogs (by PID) and waits for each to exit; idempotent. */
  stop(): Promise<void>;
  /** Synchronous form for `process.on("exit")`, where nothing asynchronous runs. */
  stopSync(): void;
}

export async function startCpuHogs(count: number): Promise<CpuHogs> {
  if (!Number.isInteger(count) || count < 1) throw new Error(`startCpuHogs: count must be a positive integer (got ${count})`);
  const children: ChildProcess[] = [];
  const stopSync = (): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) process.kill(c.pid, "SIGKILL");
  };
  try {
    for (let i = 0; i < count; i++) {
      const child = spawn(process.execPath, ["-e", HOG_PROGRAM, String(process.pid)], { stdio: "ignore" });
      children.push(child);
      await once(child, "spawn");
    }
  } catch (err) {
    stopSync();
    throw err;
  }
  let stopping: Promise<void> | undefined;
  return {
    pids: children.map((c) => c.pid!),
    stopSync,
    stop: () =>
      (stopping ??= (async () => {
        const exits = children.filter((c) => c.exitCode === null && c.signalCode === null).map((c) => once(c, "exit"));
        stopSync();
        await Promise.all(exits);
      })()),
  };
}
