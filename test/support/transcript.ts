// A Runner that replays a recorded transcript (command → result) in order and fails on any
// deviation, so privhelper unit tests assert exactly which commands ran, with which stdin,
// and that nothing mutating ran when nothing should.
import { constants, openSync } from "node:fs";
import { Socket } from "node:net";
import { commandError, type RunOptions, type RunResult, type Runner } from "../../privhelper/os/run.js";

export interface TranscriptEntry {
  /** The expected argv; a RegExp element matches a generated argument (a FIFO's random name). */
  cmd: readonly (string | RegExp)[];
  /** Expected stdin, when the test pins it: `input`, or what was written to `stdinFd` up to EOF. */
  input?: string;
  result: RunResult;
  /**
   * Runs once the command matched, before it answers: what the real command would have done
   * (mkfifo makes a FIFO), or something that happens meanwhile (the caller cancels, a test
   * holds the command until it lets go).
   */
  effect?: (cmd: readonly string[]) => void | Promise<void>;
  /** A command that exits without reading the `stdinFd` it was given (wg failing before it reads its config). */
  ignoresStdin?: true;
}

export interface Ran {
  cmd: string[];
  /** The stdin the command got, from `input` or read from `stdinFd`. */
  input?: string;
  /** Whether it was given an AbortSignal (reads are; mutations must not be). */
  signal: boolean;
  /** Where a detached daemon's output goes. */
  logFile?: string;
  result: RunResult;
}

const show = (cmd: readonly (string | RegExp)[]) => cmd.map(String).join(" ");
const matches = (want: readonly (string | RegExp)[], cmd: readonly string[]) =>
  want.length === cmd.length && want.every((w, i) => (typeof w === "string" ? w === cmd[i] : w.test(cmd[i] ?? "")));

/** Reads a child's stdin descriptor to EOF through a descriptor of our own (the caller closes its copy as soon as run() returns). */
function drain(fd: number): Promise<string> {
  // Non-blocking, so a FIFO with no writer fails the test instead of hanging it.
  const own = openSync(`/proc/self/fd/${fd}`, constants.O_RDONLY | constants.O_NONBLOCK);
  const sock = new Socket({ fd: own, readable: true, writable: false });
  let text = "";
  sock.setEncoding("utf8");
  return new Promise((resolve, reject) => {
    sock.on("data", (d: string) => (text += d));
    sock.on("end", () => {
      sock.destroy();
      resolve(text);
    });
    sock.on("error", reject);
  });
}

export class TranscriptRunner implements Runner {
  readonly ran: Ran[] = [];
  private next = 0;

  constructor(private readonly transcript: readonly TranscriptEntry[]) {}

  run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const cmd = [file, ...args];
    const want = this.transcript[this.next++];
    if (!want) return Promise.reject(new Error(`unexpected command (transcript exhausted): ${cmd.join(" ")}`));
    if (!matches(want.cmd, cmd)) return Promise.reject(new Error(`transcript mismatch at #${this.next - 1}: want ${show(want.cmd)}, got ${cmd.join(" ")}`));
    // Taken now, synchronously, as a spawned child would take it.
    const stdin = opts.input !== undefined ? Promise.resolve(opts.input) : opts.stdinFd !== undefined && !want.ignoresStdin ? drain(opts.stdinFd) : Promise.resolve(undefined);
    // Recorded when it starts, in the order commands start; its stdin once read.
    const ran: Ran = { cmd, signal: opts.signal !== undefined, result: want.result };
    this.ran.push(ran);
    return (async () => {
      await want.effect?.(cmd);
      const input = await stdin;
      if (input !== undefined) ran.input = input;
      if (want.input !== undefined && want.input !== input) throw new Error(`stdin mismatch for ${cmd.join(" ")}:\nwant ${want.input}\ngot  ${String(input)}`);
      if (want.result.exitCode !== 0 && !opts.allowFailure) throw commandError("internal", cmd, `exit ${want.result.exitCode}`, want.result.stderr);
      return want.result;
    })();
  }

  spawnDetached(file: string, args: readonly string[], logFile: string): number {
    const cmd = ["spawn", file, ...args];
    const want = this.transcript[this.next++];
    if (!want || !matches(want.cmd, cmd)) throw new Error(`transcript mismatch: unexpected ${cmd.join(" ")}`);
    void want.effect?.(cmd);
    this.ran.push({ cmd, signal: false, logFile, result: want.result });
    return Number(want.result.stdout) || 4242;
  }

  /** Every transcript entry was used. */
  get done(): boolean {
    return this.next === this.transcript.length;
  }

  /** The commands that ran, one string each (for readable assertions). */
  get commands(): string[] {
    return this.ran.map((r) => r.cmd.join(" "));
  }
}

export const ok = (stdout = ""): RunResult => ({ stdout, stderr: "", exitCode: 0 });
export const fail = (stderr: string, exitCode = 1): RunResult => ({ stdout: "", stderr, exitCode });
