// The one way privhelper runs programs: argv arrays, never a shell; secrets only on stdin.
// Unit tests replay a recorded transcript through the same interface.
import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { PlexdError, type ErrorCode } from "../../proto/lib/errors.js";

/** `stdinFd`: a FIFO (os/wg.ts); `signal` only for reads: a started mutation runs to its end. */
export interface RunOptions { input?: string; stdinFd?: number; timeoutMs?: number; signal?: AbortSignal | undefined; allowFailure?: boolean }

export interface RunResult { stdout: string; stderr: string; exitCode: number }

export interface Runner {
  run(file: string, args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** A daemon that must outlive privhelper (wireguard-go): own session, output to `logFile`. */
  spawnDetached(file: string, args: readonly string[], logFile: string): number;
}

export const commandError = (code: ErrorCode, command: readonly string[], how: string, stderr: string): PlexdError => new PlexdError(code, `${command.join(" ")}: ${how}${stderr ? `: ${stderr.trim().slice(0, 500)}` : ""}`);

// node:child_process itself, no wrapper library: the root process stays lean and each `ip` or
// `nft` costs ~1.3 ms less (measured), which the per-event apply pays twice.
export const processRunner: Runner = {
  run(file, args, opts = {}) {
    const cmd = [file, ...args];
    return new Promise((resolve, reject) => {
      const child = spawn(file, [...args], { stdio: [opts.input !== undefined ? "pipe" : (opts.stdinFd ?? "ignore"), "pipe", "pipe"], env: { ...process.env, LC_ALL: "C" }, ...(opts.signal ? { signal: opts.signal } : {}) });
      const [out, err] = [[] as Buffer[], [] as Buffer[]];
      let [timedOut, spawnError] = [false, ""];
      const timer = setTimeout(() => (timedOut = child.kill("SIGKILL")), opts.timeoutMs ?? 30_000);
      child.on("error", (e) => (spawnError ||= e.message)); // not started, or aborted (then killed)
      child.stdout?.on("data", (d: Buffer) => out.push(d));
      child.stderr?.on("data", (d: Buffer) => err.push(d));
      child.stdin?.on("error", () => undefined); // EPIPE: the program exited before reading it all
      child.stdin?.end(opts.input);
      child.on("close", (exitCode: number | null, signal: string | null) => {
        clearTimeout(timer);
        const [stdout, stderr] = [Buffer.concat(out).toString(), Buffer.concat(err).toString()];
        if (opts.signal?.aborted) reject(new PlexdError("cancelled", `${file}: cancelled`));
        else if (timedOut) reject(commandError("deadline_exceeded", cmd, "timed out", stderr));
        else if (signal) reject(commandError("internal", cmd, `killed by ${signal}`, stderr));
        else if (spawnError || exitCode === null) reject(commandError("internal", cmd, "did not run", spawnError));
        else if (exitCode !== 0 && !opts.allowFailure) reject(commandError("internal", cmd, `exit ${exitCode}`, stderr));
        else resolve({ stdout, stderr, exitCode });
      });
    });
  },
  spawnDetached(file, args, logFile) {
    const fd = openSync(logFile, "a", 0o600);
    try {
      // Own session and no timer: a daemon that must survive a privhelper restart.
      const child = spawn(file, [...args], { detached: true, stdio: ["ignore", fd, fd], env: { ...process.env, LC_ALL: "C" } });
      child.on("error", () => undefined); // a failed spawn shows as the device never appearing
      child.unref();
      if (child.pid === undefined) throw new PlexdError("internal", `${file}: spawn failed`);
      return child.pid;
    } finally {
      closeSync(fd);
    }
  },
};
