// The one way privhelper runs programs (design.md 4.8): argv arrays, never a shell;
// secrets only on stdin. Everything that touches the kernel goes through a Runner so
// unit tests can swap in a transcript (recorded command → result) instead of root tools.
import { spawn } from "node:child_process";
import { openSync, closeSync, readFileSync } from "node:fs";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa, type Options } from "execa";
import { PlexdError, type ErrorCode } from "../../proto/lib/errors.js";
import { Coprocess } from "./coprocess.js";

export interface RunOptions {
  /** Written to the child's stdin (keys, configs). Never logged, never in argv. */
  input?: string;
  timeoutMs?: number;
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
  /**
   * Start a long-lived daemon that must outlive privhelper (wireguard-go): own session,
   * stdio to `logFile`, not awaited. Returns its pid.
   */
  spawnDetached(file: string, args: readonly string[], logFile: string): number;
  /**
   * Feeds `lines` to a tool's batch mode (`ip -batch -`) and resolves when `answers` lines of
   * output have come back, as `run` with `input` would (same RunResult, same failures). The
   * system runner keeps the tool running between calls; a transcript records it as a run.
   */
  batch(file: string, args: readonly string[], lines: readonly string[], opts: BatchOptions): Promise<RunResult>;
  /**
   * The text of a kernel table under /proc/net (routes), read at once: the kernel writes it
   * in one go, faster than any tool prints it. A transcript records it as `read <path>`.
   */
  readKernelTable(path: string): string;
}

export interface BatchOptions extends RunOptions {
  /** Lines of output that make the whole answer (a show command answers one line). */
  answers: number;
  /** Start a new process for this request: `ip` caches interface indexes by name (below). */
  fresh?: boolean;
  /** Read-only lines: a failure is asked once more of a new process before it counts. */
  retryFresh?: boolean;
}

/** A failed command, keeping everything needed to say what went wrong (design.md 4.8). */
export class CommandError extends PlexdError {
  constructor(
    code: ErrorCode,
    readonly command: readonly string[],
    readonly exitCode: number | undefined,
    readonly signalName: string | undefined,
    readonly stderr: string,
    readonly timedOut: boolean,
    options?: { cause?: unknown },
  ) {
    const how = timedOut ? "timed out" : signalName ? `killed by ${signalName}` : `exit ${String(exitCode)}`;
    super(code, `${command.join(" ")}: ${how}${stderr ? `: ${stderr.trim().slice(0, 500)}` : ""}`, options);
  }
}

const defaultTimeoutMs = 30_000;

/**
 * stdin for `input`: a real pipe, not Node's default socketpair. wg and nft open
 * `/dev/stdin` by path, which fails with ENXIO on a socket; a FIFO whose name is unlinked
 * before the child starts gives them a pipe while the secret still never touches disk.
 */
async function pipeWith(run: (stdinFd: number) => Promise<RunResult>, input: string): Promise<RunResult> {
  const dir = await mkdtemp(join(tmpdir(), "plexd-priv-"));
  const fifo = join(dir, "in");
  try {
    const r = await execa("mkfifo", ["-m", "600", fifo], { reject: false, timeout: 5_000 });
    if (r.exitCode !== 0) throw new CommandError("internal", ["mkfifo", "-m", "600", fifo], r.exitCode, r.signal, r.stderr, r.timedOut);
    // Opening either end blocks until the other is opened: open both concurrently.
    const [reader, writer] = await Promise.all([open(fifo, "r"), open(fifo, "w")]);
    await rm(dir, { recursive: true, force: true });
    try {
      const child = run(reader.fd);
      await reader.close();
      const wrote = writer.writeFile(input).finally(() => writer.close());
      const [result] = await Promise.all([child, wrote.catch(() => undefined)]);
      return result;
    } finally {
      await reader.close().catch(() => undefined);
      await writer.close().catch(() => undefined);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * A command each batch tool runs after the caller's lines: its one line of output marks the
 * end of the answer, mutations included (they print nothing). `ip -batch` without -force
 * stops at the first failing line, so reaching it also means every line before succeeded.
 */
//
// Not `link show`: ip keeps a static "link mode" flag once a batch has run `link show`, and
// every later `addr show` in the same process then omits the addresses.
const batchSentinels: Record<string, string> = { ip: "addr show dev lo" };
const coprocesses = new Map<string, Coprocess>();

function checked(file: string, args: readonly string[], r: RunResult, opts: RunOptions): RunResult {
  if (r.exitCode !== 0 && !opts.allowFailure) throw new CommandError("internal", [file, ...args], r.exitCode, undefined, r.stderr, false);
  return r;
}

export const execaRunner: Runner = {
  async run(file, args, opts = {}) {
    const once = async (stdin: number | "ignore") => {
      const r = await execa(file, [...args], {
        reject: false,
        stdin: stdin as Options["stdin"],
        timeout: opts.timeoutMs ?? defaultTimeoutMs,
        ...(opts.signal ? { cancelSignal: opts.signal } : {}),
        stripFinalNewline: false,
        env: { LC_ALL: "C" },
        extendEnv: true,
      });
      if (r.isCanceled) throw new PlexdError("cancelled", `${file}: cancelled`);
      if (r.failed && (r.timedOut || r.signal || r.exitCode === undefined || !opts.allowFailure)) {
        throw new CommandError(
          r.timedOut ? "deadline_exceeded" : "internal",
          [file, ...args],
          r.exitCode,
          r.signal,
          r.stderr || (r.exitCode === undefined ? (r.message ?? "") : ""),
          r.timedOut,
        );
      }
      return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode ?? -1 };
    };
    return opts.input === undefined ? once("ignore") : pipeWith(once, opts.input);
  },
  spawnDetached(file, args, logFile) {
    const fd = openSync(logFile, "a", 0o600);
    try {
      // node:child_process rather than execa: execa ties children to our lifetime (cleanup,
      // result promise holding pipes); a daemon that must survive us needs none of that.
      const child = spawn(file, [...args], { detached: true, stdio: ["ignore", fd, fd], env: { ...process.env, LC_ALL: "C" } });
      child.on("error", () => undefined);
      child.unref();
      if (child.pid === undefined) throw new PlexdError("internal", `${file}: spawn failed`);
      return child.pid;
    } finally {
      closeSync(fd);
    }
  },
  async batch(file, args, lines, opts) {
    const sentinel = batchSentinels[file];
    if (sentinel === undefined) throw new PlexdError("internal", `${file} has no batch sentinel`);
    const id = [file, ...args].join("\0");
    let co = coprocesses.get(id);
    if (!co) coprocesses.set(id, (co = new Coprocess(file, args)));
    if (opts.fresh) co.close();
    const want = opts.answers + 1;
    const ask = () =>
      co.exchange([...lines, sentinel].join("\n") + "\n", {
        complete: (out) => countLines(out) >= want,
        timeoutMs: opts.timeoutMs ?? defaultTimeoutMs,
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
    let r = await ask();
    // A long-lived ip resolves an interface name through its own cache: after the link was
    // deleted and made again (new index) it reports it missing. Only a read may simply be
    // asked again; the caller marks mutations `fresh` after it recreated a link itself.
    if (r.exitCode !== 0 && opts.retryFresh) {
      co.close();
      r = await ask();
    }
    // The sentinel's answer is ours, not the caller's.
    const stdout = r.exitCode === 0 ? r.stdout.slice(0, nthLineEnd(r.stdout, opts.answers)) : r.stdout;
    return checked(file, args, { ...r, stdout }, opts);
  },
  readKernelTable(path) {
    // Synchronous on purpose: a /proc table is made in memory, and the reads that run beside
    // it (wireguard-go's UAPI answer) keep arriving in their socket meanwhile.
    return readFileSync(path, "latin1");
  },
};

function countLines(s: string): number {
  let n = 0;
  for (let i = s.indexOf("\n"); i !== -1; i = s.indexOf("\n", i + 1)) n++;
  return n;
}

/** Offset just past the n-th newline (0 for n = 0). */
function nthLineEnd(s: string, n: number): number {
  let at = 0;
  for (let k = 0; k < n; k++) at = s.indexOf("\n", at) + 1;
  return at;
}

/** Ends the batch coprocesses (shutdown). */
export function closeBatchTools(): void {
  for (const co of coprocesses.values()) co.close();
  coprocesses.clear();
}

/** One recorded exchange. `input` is stored only as a sha-less marker of presence by default. */
export interface TranscriptEntry {
  cmd: readonly string[];
  input?: string;
  result: RunResult;
}

/**
 * Replays a recorded transcript in order and fails on any deviation, so a unit test
 * asserts exactly which commands ran (and that no mutation happened when none should).
 */
export class TranscriptRunner implements Runner {
  readonly ran: TranscriptEntry[] = [];
  private next = 0;

  constructor(private readonly transcript: readonly TranscriptEntry[]) {}

  run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const cmd = [file, ...args];
    const want = this.transcript[this.next++];
    if (!want) return Promise.reject(new Error(`unexpected command (transcript exhausted): ${cmd.join(" ")}`));
    if (JSON.stringify(want.cmd) !== JSON.stringify(cmd)) {
      return Promise.reject(new Error(`transcript mismatch at #${this.next - 1}: want ${want.cmd.join(" ")}, got ${cmd.join(" ")}`));
    }
    if (want.input !== undefined && want.input !== opts.input) {
      return Promise.reject(new Error(`transcript stdin mismatch for ${cmd.join(" ")}:\nwant ${want.input}\ngot  ${String(opts.input)}`));
    }
    this.ran.push({ cmd, ...(opts.input !== undefined ? { input: opts.input } : {}), result: want.result });
    if (want.result.exitCode !== 0 && !opts.allowFailure) {
      return Promise.reject(new CommandError("internal", cmd, want.result.exitCode, undefined, want.result.stderr, false));
    }
    return Promise.resolve(want.result);
  }

  spawnDetached(file: string, args: readonly string[], _logFile?: string): number {
    const cmd = [file, ...args];
    const want = this.transcript[this.next++];
    if (!want || JSON.stringify(want.cmd) !== JSON.stringify(["spawn", ...cmd])) {
      throw new Error(`transcript mismatch: unexpected spawn ${cmd.join(" ")}`);
    }
    this.ran.push({ cmd: ["spawn", ...cmd], result: want.result });
    return Number(want.result.stdout) || 4242;
  }

  /** Recorded as the one-shot run it stands for (a one-shot process has no stale cache). */
  async batch(file: string, args: readonly string[], lines: readonly string[], opts: BatchOptions): Promise<RunResult> {
    const { answers: _a, fresh: _f, retryFresh: _r, ...rest } = opts;
    return this.run(file, args, { ...rest, input: lines.join("\n") + "\n" });
  }

  readKernelTable(path: string): string {
    const cmd = ["read", path];
    const want = this.transcript[this.next++];
    if (!want || JSON.stringify(want.cmd) !== JSON.stringify(cmd)) {
      throw new Error(`transcript mismatch at #${this.next - 1}: want ${want?.cmd.join(" ") ?? "(end)"}, got ${cmd.join(" ")}`);
    }
    this.ran.push({ cmd, result: want.result });
    return want.result.stdout;
  }

  /** Every transcript entry was used. */
  get done(): boolean {
    return this.next === this.transcript.length;
  }
}

/** Shorthand for transcript results. */
export function ok(stdout = ""): RunResult {
  return { stdout, stderr: "", exitCode: 0 };
}
export function fail(stderr: string, exitCode = 1): RunResult {
  return { stdout: "", stderr, exitCode };
}
