// The one way privhelper runs programs: argv arrays, never a shell; secrets only on stdin.
// Unit tests replay a recorded transcript through the same interface.
import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { execa } from "execa";
import { PlexdError, type ErrorCode } from "../../proto/lib/errors.js";

/** `stdinFd`: a FIFO (os/wg.ts); `signal` only for reads: a started mutation runs to its end. */
export interface RunOptions { input?: string; stdinFd?: number; timeoutMs?: number; signal?: AbortSignal; allowFailure?: boolean }

export interface RunResult { stdout: string; stderr: string; exitCode: number }

export interface Runner {
  run(file: string, args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** A daemon that must outlive privhelper (wireguard-go): own session, output to `logFile`. */
  spawnDetached(file: string, args: readonly string[], logFile: string): number;
}

/** A failed command, keeping what is needed to say what went wrong. */
export class CommandError extends PlexdError {
  constructor(code: ErrorCode, command: readonly string[], exitCode: number | undefined, how: string, stderr: string) {
    super(code, `${command.join(" ")}: ${how}${stderr ? `: ${stderr.trim().slice(0, 500)}` : ""}`);
    this.exitCode = exitCode;
  }
  readonly exitCode: number | undefined;
}

export const execaRunner: Runner = {
  async run(file, args, opts = {}) {
    const r = await execa(file, [...args], {
      reject: false,
      // execa's types name only fds 3-9 for stdin, but it hands any open descriptor to the child.
      stdin: opts.input !== undefined ? "pipe" : ((opts.stdinFd ?? "ignore") as "ignore"),
      ...(opts.input !== undefined ? { input: opts.input } : {}),
      timeout: opts.timeoutMs ?? 30_000,
      ...(opts.signal ? { cancelSignal: opts.signal } : {}),
      stripFinalNewline: false,
      env: { LC_ALL: "C" },
    });
    if (r.isCanceled) throw new PlexdError("cancelled", `${file}: cancelled`);
    const cmd = [file, ...args];
    if (r.timedOut) throw new CommandError("deadline_exceeded", cmd, r.exitCode, "timed out", r.stderr);
    if (r.signal) throw new CommandError("internal", cmd, r.exitCode, `killed by ${r.signal}`, r.stderr);
    if (r.exitCode === undefined) throw new CommandError("internal", cmd, undefined, "did not run", r.message ?? "");
    if (r.exitCode !== 0 && !opts.allowFailure) throw new CommandError("internal", cmd, r.exitCode, `exit ${r.exitCode}`, r.stderr);
    return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode };
  },
  spawnDetached(file, args, logFile) {
    const fd = openSync(logFile, "a", 0o600);
    try {
      // node:child_process, not execa: execa ties a child to our lifetime, and a daemon that
      // must survive a privhelper restart needs none of that.
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
