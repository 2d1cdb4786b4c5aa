import { isCancellation, PlexdError } from "../../proto/lib/errors.js";

// Level-triggered work (docs/architecture.md#inside-the-agent) only needs to know *that* something changed, so
// triggers coalesce: at most one run in flight and at most one queued behind it. A burst
// of 1,000 peer events therefore costs one or two applies, not 1,000.

export type RunFn = (reasons: ReadonlySet<string>, signal: AbortSignal) => Promise<void>;

export class CoalescingRunner {
  readonly #run: RunFn;
  readonly #signal: AbortSignal;
  readonly #onError: (err: PlexdError) => void;
  #queued = new Set<string>();
  #running: Promise<void> | undefined;
  #scheduled = false;
  /** Completed runs; tests and metrics read it. */
  runs = 0;

  constructor(run: RunFn, signal: AbortSignal, onError: (err: PlexdError) => void) {
    this.#run = run;
    this.#signal = signal;
    this.#onError = onError;
  }

  trigger(reason: string): void {
    if (this.#signal.aborted) return;
    this.#queued.add(reason);
    if (this.#running !== undefined || this.#scheduled) return;
    this.#scheduled = true;
    // Wait one macrotask so every event parsed from the same network chunk lands first.
    setImmediate(() => {
      this.#scheduled = false;
      this.#drain();
    });
  }

  #drain(): void {
    if (this.#running !== undefined || this.#queued.size === 0 || this.#signal.aborted) return;
    const reasons = this.#queued;
    this.#queued = new Set();
    this.#running = this.#run(reasons, this.#signal)
      .catch((err: unknown) => {
        if (!isCancellation(err)) this.#onError(PlexdError.from(err));
      })
      .finally(() => {
        this.runs++;
        this.#running = undefined;
        this.#drain();
      });
  }

  /** Resolves when nothing is running or queued (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.#running !== undefined || this.#scheduled || this.#queued.size > 0) {
      if (this.#running) await this.#running;
      else await new Promise((r) => setImmediate(r));
      if (this.#signal.aborted) return;
    }
  }
}
