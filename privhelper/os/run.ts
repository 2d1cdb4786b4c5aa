// The one way privhelper runs programs (design.md 4.8): argv arrays, never a shell; secrets
// only on stdin. Everything that touches the kernel goes through a Runner, so unit tests
// replay a recorded transcript instead of root tools.
import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { execa } from "execa";
import { PlexdError, type ErrorCode } from "../../proto/lib/errors.js";

export interface RunOptions {
  /** Written to the child's stdin (scripts, configs). Never logged, never in argv. */
  input?: string;
  /** A file descriptor the child gets as stdin instead (a FIFO: see os/wg.ts). */
  stdinFd?: number;
  timeoutMs?: number;
  /** Only for reads: a mutation, once started, runs to its end (see adapter.ts). */
  signal?: AbortSignal;
  /** Resolve with the result instead of throwing on a non-zero exit. */
  allowFailure?: boolean;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface Runner {
  run(file: string, args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** Starts a daemon that must outlive privhelper (wireguard-go): own session, output to `logFile`. */
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
