import { setTimeout as sleepTimer } from "node:timers/promises";

// Every timing decision in the agent goes through a Clock so tests can drive time by hand
// (docs/architecture.md#rules-the-code-keeps) instead of sleeping for real.

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Resolves after `ms`; rejects with an AbortError as soon as `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The error a cancelled sleep rejects with; same shape as Node's own AbortError. */
export function abortError(signal?: AbortSignal): Error {
  const err = new Error("The operation was aborted", { cause: signal?.reason });
  err.name = "AbortError";
  (err as Error & { code: string }).code = "ABORT_ERR";
  return err;
}

export function isAbortError(err: unknown): boolean {
  return err instanceof Error && (err.name === "AbortError" || (err as { code?: unknown }).code === "ABORT_ERR");
}

export const realClock: Clock = {
  now: () => Date.now(),
  sleep: async (ms, signal) => {
    await sleepTimer(Math.max(0, ms), undefined, signal === undefined ? {} : { signal });
  },
};

interface Timer {
  at: number;
  seq: number;
  resolve: () => void;
}

/**
 * A clock that only moves when told to. `advance` fires due sleeps in time order and lets the
 * code they wake run (including I/O callbacks, via setImmediate) before looking for the next
 * one, so a loop that sleeps again is driven through the whole window.
 */
export class FakeClock implements Clock {
  private t: number;
  private seq = 0;
  private timers: Timer[] = [];
  /** Every duration passed to sleep(), in call order; tests assert backoff schedules on it. */
  readonly sleepLog: number[] = [];

  constructor(startMs = Date.parse("2025-01-15T10:30:00Z")) {
    this.t = startMs;
  }

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    this.sleepLog.push(ms);
    if (signal?.aborted === true) return Promise.reject(abortError(signal));
    return new Promise<void>((resolve, reject) => {
      const timer: Timer = {
        at: this.t + Math.max(0, ms),
        seq: this.seq++,
        resolve: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = (): void => {
        this.timers = this.timers.filter((x) => x !== timer);
        reject(abortError(signal));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.timers.push(timer);
    });
  }

  /** Number of sleeps currently waiting. */
  get pending(): number {
    return this.timers.length;
  }

  /** Time at which the earliest pending sleep fires, if any. */
  nextAt(): number | undefined {
    return this.earliest()?.at;
  }

  /** Moves the clock by `ms`, firing every sleep that falls due on the way. */
  async advance(ms: number): Promise<void> {
    const target = this.t + ms;
    for (;;) {
      await settle();
      const next = this.earliest();
      if (next === undefined || next.at > target) break;
      this.fire(next);
    }
    this.t = target;
    await settle();
  }

  /** Jumps to the earliest pending sleep and fires it; returns false when none is pending. */
  async runNext(): Promise<boolean> {
    await settle();
    const next = this.earliest();
    if (next === undefined) return false;
    this.fire(next);
    await settle();
    return true;
  }

  /** Sets the time without firing anything (for staleness tests). */
  set(ms: number): void {
    this.t = ms;
  }

  /** Waits (in real time, via the event loop) until at least `n` sleeps are pending. */
  async waitForSleepers(n = 1, maxTurns = 10_000): Promise<void> {
    for (let i = 0; i < maxTurns; i++) {
      if (this.timers.length >= n) return;
      await settle();
    }
    throw new Error(`FakeClock: expected ${n} pending sleep(s), have ${this.timers.length}`);
  }

  private earliest(): Timer | undefined {
    let best: Timer | undefined;
    for (const x of this.timers) if (best === undefined || x.at < best.at || (x.at === best.at && x.seq < best.seq)) best = x;
    return best;
  }

  private fire(timer: Timer): void {
    this.timers = this.timers.filter((x) => x !== timer);
    if (timer.at > this.t) this.t = timer.at;
    timer.resolve();
  }
}

function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
