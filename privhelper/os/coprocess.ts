// A long-lived child that answers requests on stdin/stdout, for tools with a batch mode
// (`ip -batch -`). Starting a process costs 5-12 ms here, more than the whole rest of an
// incremental ApplyMesh; a coprocess that stays up answers a request in well under 1 ms.
//
// The child is treated as disposable: when it exits (a failed command ends `ip -batch`
// without -force), times out or is cancelled mid-request, the request in flight gets the
// exit code and stderr exactly as a one-shot run would, and the next request starts a fresh
// child. Requests are serialised: a child's output belongs to one request at a time.
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { PlexdError } from "../../proto/lib/errors.js";
import type { RunResult } from "./runner.js";

export interface ExchangeOptions {
  /** True once `stdout` holds the whole answer to this request. */
  complete: (stdout: string) => boolean;
  timeoutMs: number;
  signal?: AbortSignal;
}

export class Coprocess {
  #child: ChildProcessWithoutNullStreams | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  /** Children started so far (tests and the log). */
  starts = 0;

  constructor(
    readonly file: string,
    readonly args: readonly string[],
  ) {}

  /** Writes `input`, resolves with what the child answered (or how it ended). */
  exchange(input: string, opts: ExchangeOptions): Promise<RunResult> {
    const run = this.#queue.then(() => this.#exchange(input, opts));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #start(): ChildProcessWithoutNullStreams {
    const child = spawn(this.file, [...this.args], { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, LC_ALL: "C" } });
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdin.on("error", () => undefined); // EPIPE when it exits first; 'exit' reports it
    child.on("close", () => {
      if (this.#child === child) this.#child = undefined;
    });
    this.starts++;
    return child;
  }

  #exchange(input: string, opts: ExchangeOptions): Promise<RunResult> {
    if (opts.signal?.aborted) return Promise.reject(new PlexdError("cancelled", `${this.file}: cancelled`));
    const child = (this.#child ??= this.#start());
    return new Promise<RunResult>((resolve, reject) => {
      let stdout = "";
      let stderr = "";
      const finish = (err: Error | undefined, result?: RunResult): void => {
        clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
        child.stdout.off("data", onOut);
        child.stderr.off("data", onErr);
        child.off("close", onClose);
        child.off("error", onError);
        if (err) reject(err);
        else resolve(result!);
      };
      const kill = (): void => {
        if (this.#child === child) this.#child = undefined;
        child.kill("SIGKILL");
      };
      const onOut = (d: string): void => {
        stdout += d;
        if (opts.complete(stdout)) finish(undefined, { stdout, stderr, exitCode: 0 });
      };
      const onErr = (d: string): void => {
        stderr += d;
      };
      // 'close', not 'exit': it comes after the last of stdout and stderr has been read.
      const onClose = (code: number | null, sig: NodeJS.Signals | null): void => {
        finish(undefined, { stdout, stderr: stderr || (sig ? `killed by ${sig}` : ""), exitCode: code ?? -1 });
      };
      const onError = (e: Error): void => {
        kill();
        finish(PlexdError.from(e));
      };
      const onAbort = (): void => {
        kill();
        finish(new PlexdError("cancelled", `${this.file}: cancelled`));
      };
      const timer = setTimeout(() => {
        kill();
        finish(new PlexdError("deadline_exceeded", `${[this.file, ...this.args].join(" ")}: no answer in ${opts.timeoutMs} ms`));
      }, opts.timeoutMs);
      child.stdout.on("data", onOut);
      child.stderr.on("data", onErr);
      child.once("close", onClose);
      child.once("error", onError);
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      child.stdin.write(input);
    });
  }

  /** Ends the child (privhelper shutdown; tests). */
  close(): void {
    this.#child?.stdin.end();
    this.#child = undefined;
  }
}
