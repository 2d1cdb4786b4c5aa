// Cancelling privhelper calls at random points, the ways a caller can: cancel from the client,
// a deadline, or the calling process dying (SIGTERM or SIGKILL) while its call is in flight.
import { spawnInNamespace } from "../harness/index.js";
import { methodByName, type PrivCaller } from "./priv-caller.js";

export type CancelWay = "cancel" | "deadline" | "SIGTERM" | "SIGKILL";

const CANCELLED = 1;
const DEADLINE_EXCEEDED = 4;

/** A status that is neither success nor the caller's own cancellation: privhelper failed the call. */
export class UnexpectedStatus extends Error {
  constructor(readonly outcome: CancelOutcome, details: string) {
    super(`a call cancelled by ${outcome.way} after ${outcome.delayMs} ms ended with status ${String(outcome.code)}: ${details}`);
  }
}

function judged(o: CancelOutcome, details: string): CancelOutcome {
  if (o.code !== undefined && o.code !== 0 && o.code !== CANCELLED && o.code !== DEADLINE_EXCEEDED) throw new UnexpectedStatus(o, details);
  return o;
}

export interface CancelOutcome {
  way: CancelWay;
  delayMs: number;
  /** The call ended before it completed, by the caller's doing (a cancellation that counts). */
  cancelled: boolean;
  /** gRPC status the caller saw, when it lived to see one. */
  code: number | undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One call of `method`, cancelled `delayMs` after it was started, in one of the in-process ways. */
export async function cancelInProcess(caller: PrivCaller, method: string, request: Uint8Array, way: "cancel" | "deadline", delayMs: number): Promise<CancelOutcome> {
  const m = methodByName(method);
  if (way === "deadline") {
    const r = await caller.call(m, request, { deadlineMs: delayMs });
    return judged({ way, delayMs, cancelled: r.code !== 0, code: r.code }, r.details);
  }
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), delayMs);
  const r = await caller.call(m, request, { signal: ac.signal, deadlineMs: 120_000 });
  clearTimeout(timer);
  return judged({ way, delayMs, cancelled: r.code !== 0, code: r.code }, r.details);
}

/**
 * One call made by a child process (the bundled caller, as root), which is sent `signal`
 * `delayMs` after it reported the call started. Counts as a cancellation when the process
 * died before it printed an outcome.
 */
export async function cancelByKill(
  callerScript: string,
  socket: string,
  method: string,
  requestFile: string,
  signal: "SIGTERM" | "SIGKILL",
  delayMs: number,
  logDir: string,
): Promise<CancelOutcome> {
  const p = spawnInNamespace({ name: `victim-${method}`, logDir, argv: ["node", callerScript, "once", socket, method, requestFile, "120000"] });
  await p.waitForLine(/^started$/, 60_000);
  await sleep(delayMs);
  p.signal(signal, { group: false });
  await p.waitForExit(30_000);
  const last = p.stdout().trim().split("\n").at(-1) ?? "";
  const outcome = last.startsWith("{") ? (JSON.parse(last) as { code: number; details: string }) : undefined;
  return judged({ way: signal, delayMs, cancelled: outcome === undefined, code: outcome?.code }, outcome?.details ?? "");
}
