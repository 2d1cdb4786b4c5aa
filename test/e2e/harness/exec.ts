import { execa, execaSync } from "execa";

// The one place the harness runs short-lived commands: execa with argv arrays, never a shell,
// stdin closed unless input is given (CI has no stdin), bounded by a timeout.

export interface ExecOptions {
  /** Default 30 s. */
  timeoutMs?: number;
  /** Written to stdin (keys, nft rulesets); stdin is closed otherwise. */
  input?: string | Buffer;
  /** Throw on a non-zero exit (default true). */
  reject?: boolean;
  env?: Record<string, string>;
  cwd?: string;
  /** "ignore" discards stdout/stderr: for commands that leave a daemon behind. Default "capture". */
  output?: "capture" | "ignore";
}

export interface ExecResult {
  command: string;
  stdout: string;
  stderr: string;
  /** undefined when killed by a signal or never started. */
  exitCode: number | undefined;
  signal: string | undefined;
  failed: boolean;
  timedOut: boolean;
}

function options(opts: ExecOptions) {
  return {
    timeout: opts.timeoutMs ?? 30_000,
    reject: opts.reject ?? true,
    ...(opts.input !== undefined ? { input: opts.input } : { stdin: "ignore" as const }),
    ...(opts.env ? { env: opts.env } : {}),
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    ...(opts.output === "ignore" ? { stdout: "ignore" as const, stderr: "ignore" as const } : {}),
    encoding: "utf8" as const,
  };
}

/** Runs argv in the harness's own (root) network namespace. */
export async function run(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const [file, ...args] = argv;
  if (!file) throw new Error("run: empty argv");
  const sub = execa(file, args, options(opts));
  // A command that daemonises (`setsid -f`, `wireguard-go IFACE`) can leave a child holding
  // our stdout/stderr pipes; execa would then wait for that child (its timeout does not help).
  // Once the command itself has exited, stop waiting for its pipes shortly after.
  sub.once("exit", () => {
    setTimeout(() => {
      sub.stdout?.destroy();
      sub.stderr?.destroy();
    }, 500).unref();
  });
  const r = await sub;
  return {
    command: r.command,
    stdout: String(r.stdout),
    stderr: String(r.stderr),
    exitCode: r.exitCode,
    signal: r.signal,
    failed: r.failed,
    timedOut: r.timedOut,
  };
}

/** Synchronous variant, for `process.on("exit")` cleanup only. */
export function runSync(argv: readonly string[], opts: ExecOptions = {}): ExecResult {
  const [file, ...args] = argv;
  if (!file) throw new Error("runSync: empty argv");
  const r = execaSync(file, args, options(opts));
  return {
    command: r.command,
    stdout: String(r.stdout),
    stderr: String(r.stderr),
    exitCode: r.exitCode,
    signal: r.signal,
    failed: r.failed,
    timedOut: r.timedOut,
  };
}

/** `ip netns exec NS argv...` */
export function nsExec(ns: string, argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return run(["ip", "netns", "exec", ns, ...argv], opts);
}
