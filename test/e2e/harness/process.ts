import { createWriteStream, existsSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { registerCleanup } from "./cleanup.js";
import { registerLog } from "./logs.js";
import { makeTempDir } from "./tempdir.js";

// Long-running processes (mockcp, privhelper, agent, wireguard-go, servers) started by tests.
// Started via `ip netns exec NS [setpriv ...] argv` — both exec in place, so the PID we hold
// is the PID of the program itself — detached into their own process group so that reaping
// also catches their children.

export type RunAs =
  | "plexd"
  | "plexd-outsider"
  /** In group plexd (supplementary) but not the agent's user. */
  | "plexd-member"
  /** Explicit ids; `groups` are the supplementary groups (none when omitted). */
  | { uid: number; gid: number; groups?: readonly number[] };

export interface SpawnOptions {
  /** Network namespace; omitted = the harness's own namespace (loopback-only use). */
  ns?: string;
  argv: readonly string[];
  env?: Record<string, string>;
  /** Inherit the harness's environment (default true). */
  extendEnv?: boolean;
  user?: RunAs;
  cwd?: string;
  /** Used for the log file name and in messages. */
  name: string;
  /** Directory for `<name>.log` (stdout and stderr interleaved); default: a new temp dir. */
  logDir?: string;
  /** Keep stdin open as a pipe (write with `writeStdin`); default: no stdin. */
  stdin?: boolean;
  /** Own process group, reaped as a whole (default true). */
  detached?: boolean;
}

export interface ExitInfo {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
}

export interface LineMatch {
  line: string;
  stream: "stdout" | "stderr";
  /** The RegExp match when a RegExp was given. */
  match: RegExpExecArray | null;
}

export interface WaitLineOptions {
  stream?: "stdout" | "stderr" | "any";
  /** "start" (default) also matches lines already printed; "now" only later ones. */
  since?: "start" | "now";
}

export interface KillOptions {
  /** Time to wait for exit before SIGKILL (default 5000 ms). */
  graceMs?: number;
  /** Signal the whole process group when detached (default true). */
  group?: boolean;
}

export interface ProcessHandle {
  readonly name: string;
  readonly pid: number;
  readonly argv: readonly string[];
  readonly ns: string | undefined;
  readonly logPath: string;
  readonly exited: boolean;
  readonly exitInfo: ExitInfo | undefined;
  waitForLine(match: RegExp | ((line: string) => boolean), timeoutMs?: number, opts?: WaitLineOptions): Promise<LineMatch>;
  waitForExit(timeoutMs?: number): Promise<ExitInfo>;
  /** Sends `signal` (default SIGTERM), waits up to graceMs, then SIGKILL; resolves with the exit. */
  kill(signal?: NodeJS.Signals, opts?: KillOptions): Promise<ExitInfo>;
  /** Sends a signal and returns at once. */
  signal(signal: NodeJS.Signals, opts?: { group?: boolean }): void;
  writeStdin(data: string | Buffer): void;
  closeStdin(): void;
  /** stdout and stderr interleaved as received. */
  output(): string;
  stdout(): string;
  stderr(): string;
}

const MAX_BUFFER = 8 * 1024 * 1024;
const usedLogNames = new Set<string>();

/** argv with `ip netns exec` and `setpriv` prepended as requested. */
export function wrapArgv(opts: Pick<SpawnOptions, "ns" | "user" | "argv">): string[] {
  let argv = [...opts.argv];
  if (opts.user !== undefined) argv = [...setprivArgs(opts.user), "--", ...argv];
  if (opts.ns !== undefined) argv = ["ip", "netns", "exec", opts.ns, ...argv];
  return argv;
}

function setprivArgs(user: RunAs): string[] {
  // setpriv (util-linux) rather than child_process uid/gid: libuv drops *all* supplementary
  // groups when uid/gid are set, and it must run after `ip netns exec`, which needs root.
  if (typeof user === "string") return ["setpriv", `--reuid=${user}`, `--regid=${user}`, "--init-groups"];
  const groups = user.groups && user.groups.length > 0 ? [`--groups=${user.groups.join(",")}`] : ["--clear-groups"];
  return ["setpriv", `--reuid=${user.uid}`, `--regid=${user.gid}`, ...groups];
}

function logFileName(dir: string, name: string): string {
  const base = name.replace(/[^A-Za-z0-9_.-]+/g, "_") || "proc";
  let candidate = join(dir, `${base}.log`);
  for (let i = 2; usedLogNames.has(candidate) || existsSync(candidate); i++) candidate = join(dir, `${base}.${i}.log`);
  usedLogNames.add(candidate);
  return candidate;
}

interface Line {
  index: number;
  stream: "stdout" | "stderr";
  text: string;
}

interface LineWaiter {
  test: (l: Line) => LineMatch | undefined;
  resolve: (m: LineMatch) => void;
  reject: (e: Error) => void;
}

export function spawnInNamespace(opts: SpawnOptions): ProcessHandle {
  const argv = wrapArgv(opts);
  const [file, ...args] = argv;
  if (!file) throw new Error("spawnInNamespace: empty argv");
  const detached = opts.detached ?? true;
  const logDir = opts.logDir ?? makeTempDir("log", { mode: 0o755 });
  const logPath = logFileName(logDir, opts.name);
  const log = createWriteStream(logPath, { flags: "a", mode: 0o644 });
  log.on("error", () => {
    // the temp dir may be removed while a straggler still writes; the log is best effort
  });
  registerLog(opts.name, logPath);

  const child = execa(file, args, {
    detached,
    cleanup: false, // the harness's registry reaps, including on signals and hook timeouts
    reject: false,
    buffer: false,
    stdin: opts.stdin ? "pipe" : "ignore",
    stdout: "pipe",
    stderr: "pipe",
    ...(opts.env ? { env: opts.env } : {}),
    extendEnv: opts.extendEnv ?? true,
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
  });
  // Resolves (reject: false) on exit; errors such as ENOENT surface through "error" below.
  void child.catch(() => undefined);

  const pid = child.pid;
  if (pid === undefined) {
    log.end();
    throw new Error(`spawn ${opts.name} failed: ${argv.join(" ")}`);
  }

  const lines: Line[] = [];
  let lineCount = 0;
  let combined = "";
  let out = "";
  let err = "";
  const partial = { stdout: "", stderr: "" };
  const waiters = new Set<LineWaiter>();
  const exitWaiters = new Set<(e: ExitInfo) => void>();
  let exitInfo: ExitInfo | undefined;
  let exitedAt = 0;
  let closed = false;
  let spawnError: Error | undefined;

  const cap = (s: string): string => (s.length > MAX_BUFFER ? s.slice(s.length - MAX_BUFFER) : s);

  const pushLine = (stream: "stdout" | "stderr", text: string): void => {
    const line: Line = { index: lineCount++, stream, text };
    lines.push(line);
    if (lines.length > 50_000) lines.shift();
    for (const w of [...waiters]) {
      const m = w.test(line);
      if (m) {
        waiters.delete(w);
        w.resolve(m);
      }
    }
  };

  const onData = (stream: "stdout" | "stderr") => (chunk: Buffer) => {
    const text = chunk.toString("utf8");
    log.write(chunk);
    combined = cap(combined + text);
    if (stream === "stdout") out = cap(out + text);
    else err = cap(err + text);
    const parts = (partial[stream] + text).split("\n");
    partial[stream] = parts.pop() ?? "";
    for (const p of parts) pushLine(stream, p.replace(/\r$/, ""));
  };
  child.stdout?.on("data", onData("stdout"));
  child.stderr?.on("data", onData("stderr"));

  const tailText = (): string => {
    const t = combined.split("\n").slice(-20).join("\n");
    return t ? `\n--- last output of ${opts.name} (${logPath}) ---\n${t}` : ` (no output; log ${logPath})`;
  };

  const finishLines = (): void => {
    if (closed) return;
    closed = true;
    for (const s of ["stdout", "stderr"] as const) {
      if (partial[s]) pushLine(s, partial[s]);
      partial[s] = "";
    }
    const why = spawnError
      ? `failed to start: ${spawnError.message}`
      : `exited (code ${String(exitInfo?.exitCode)}, signal ${String(exitInfo?.signal)})`;
    for (const w of [...waiters]) {
      waiters.delete(w);
      w.reject(new Error(`${opts.name} ${why} before the awaited line${tailText()}`));
    }
    log.end();
  };

  const onExit = (code: number | null, sig: NodeJS.Signals | null): void => {
    if (exitInfo) return;
    exitInfo = { exitCode: code, signal: sig };
    exitedAt = Date.now();
    for (const w of [...exitWaiters]) w(exitInfo);
    exitWaiters.clear();
    // A daemonised grandchild may hold the pipes open, so "close" can come much later.
    setTimeout(finishLines, 200).unref();
  };
  child.on("exit", onExit);
  child.on("close", () => finishLines());
  child.on("error", (e: Error) => {
    spawnError = e;
    onExit(null, null);
  });

  const sendSignal = (sig: NodeJS.Signals, group: boolean): void => {
    // The group is only signalled while it can still be ours: the leader is alive, or exited
    // moments ago (its children may linger); a PGID is never reused while members remain.
    const groupOk = detached && group && (!exitInfo || Date.now() - exitedAt < 10_000);
    try {
      if (groupOk) process.kill(-pid, sig);
      else if (!exitInfo) process.kill(pid, sig);
    } catch {
      // already gone
    }
  };

  const waitForExit = (timeoutMs = 10_000): Promise<ExitInfo> => {
    if (exitInfo) return Promise.resolve(exitInfo);
    return new Promise<ExitInfo>((resolve, reject) => {
      const timer = setTimeout(() => {
        exitWaiters.delete(done);
        reject(new Error(`${opts.name} (pid ${pid}) did not exit within ${timeoutMs} ms${tailText()}`));
      }, timeoutMs);
      const done = (e: ExitInfo): void => {
        clearTimeout(timer);
        resolve(e);
      };
      exitWaiters.add(done);
    });
  };

  const kill = async (sig: NodeJS.Signals = "SIGTERM", kopts: KillOptions = {}): Promise<ExitInfo> => {
    const group = kopts.group ?? true;
    if (!exitInfo) {
      sendSignal(sig, group);
      try {
        await waitForExit(kopts.graceMs ?? 5_000);
      } catch {
        sendSignal("SIGKILL", group);
        await waitForExit(5_000);
      }
    }
    // Reap children left in the group (the leader may have exited without them).
    if (group) sendSignal("SIGKILL", true);
    return exitInfo ?? { exitCode: null, signal: null };
  };

  const cleanup = registerCleanup(
    `process ${opts.name} (pid ${pid})`,
    async () => {
      await kill("SIGTERM", { graceMs: 3_000 });
    },
    () => sendSignal("SIGKILL", true),
  );
  void cleanup;

  const handle: ProcessHandle = {
    name: opts.name,
    pid,
    argv,
    ns: opts.ns,
    logPath,
    get exited() {
      return exitInfo !== undefined;
    },
    get exitInfo() {
      return exitInfo;
    },
    waitForLine(matcher, timeoutMs = 10_000, wopts = {}) {
      const stream = wopts.stream ?? "any";
      const test = (l: Line): LineMatch | undefined => {
        if (stream !== "any" && l.stream !== stream) return undefined;
        if (typeof matcher === "function") return matcher(l.text) ? { line: l.text, stream: l.stream, match: null } : undefined;
        matcher.lastIndex = 0;
        const m = matcher.exec(l.text);
        return m ? { line: l.text, stream: l.stream, match: m } : undefined;
      };
      if ((wopts.since ?? "start") === "start") {
        for (const l of lines) {
          const m = test(l);
          if (m) return Promise.resolve(m);
        }
      }
      if (closed) return Promise.reject(new Error(`${opts.name} has exited; no matching line${tailText()}`));
      return new Promise<LineMatch>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`${opts.name}: no line matching ${String(matcher)} within ${timeoutMs} ms${tailText()}`));
        }, timeoutMs);
        const waiter: LineWaiter = {
          test,
          resolve: (m) => {
            clearTimeout(timer);
            resolve(m);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        };
        waiters.add(waiter);
      });
    },
    waitForExit,
    kill,
    signal(sig, sopts = {}) {
      sendSignal(sig, sopts.group ?? true);
    },
    writeStdin(data) {
      if (!child.stdin) throw new Error(`${opts.name}: spawned without stdin: true`);
      child.stdin.write(data);
    },
    closeStdin() {
      child.stdin?.end();
    },
    output: () => combined,
    stdout: () => out,
    stderr: () => err,
  };
  return handle;
}
