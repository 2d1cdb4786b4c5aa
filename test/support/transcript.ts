// A Runner that replays a recorded transcript (command → result) in order and fails on any
// deviation, so privhelper unit tests assert exactly which commands ran, with which stdin,
// and that nothing mutating ran when nothing should.
import { CommandError, type RunOptions, type RunResult, type Runner } from "../../privhelper/os/run.js";

export interface TranscriptEntry {
  cmd: readonly string[];
  /** Expected stdin, when the test pins it. */
  input?: string;
  result: RunResult;
}

export class TranscriptRunner implements Runner {
  readonly ran: TranscriptEntry[] = [];
  private next = 0;

  constructor(private readonly transcript: readonly TranscriptEntry[]) {}

  run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const cmd = [file, ...args];
    const want = this.transcript[this.next++];
    if (!want) return Promise.reject(new Error(`unexpected command (transcript exhausted): ${cmd.join(" ")}`));
    if (JSON.stringify(want.cmd) !== JSON.stringify(cmd)) return Promise.reject(new Error(`transcript mismatch at #${this.next - 1}: want ${want.cmd.join(" ")}, got ${cmd.join(" ")}`));
    if (want.input !== undefined && want.input !== opts.input) return Promise.reject(new Error(`stdin mismatch for ${cmd.join(" ")}:\nwant ${want.input}\ngot  ${String(opts.input)}`));
    this.ran.push({ cmd, ...(opts.input !== undefined ? { input: opts.input } : {}), result: want.result });
    if (want.result.exitCode !== 0 && !opts.allowFailure) return Promise.reject(new CommandError("internal", cmd, want.result.exitCode, `exit ${want.result.exitCode}`, want.result.stderr));
    return Promise.resolve(want.result);
  }

  spawnDetached(file: string, args: readonly string[]): number {
    const cmd = ["spawn", file, ...args];
    const want = this.transcript[this.next++];
    if (!want || JSON.stringify(want.cmd) !== JSON.stringify(cmd)) throw new Error(`transcript mismatch: unexpected ${cmd.join(" ")}`);
    this.ran.push({ cmd, result: want.result });
    return Number(want.result.stdout) || 4242;
  }

  /** Every transcript entry was used. */
  get done(): boolean {
    return this.next === this.transcript.length;
  }
}

export const ok = (stdout = ""): RunResult => ({ stdout, stderr: "", exitCode: 0 });
export const fail = (stderr: string, exitCode = 1): RunResult => ({ stdout: "", stderr, exitCode });
