// Standard backoff of docs/architecture.md#the-control-plane-channel: 1 s, ×2 per failure, capped at 60 s, each
// delay multiplied by 1 + u with u uniform in [-0.25, +0.25].

export interface BackoffOptions {
  initialMs?: number;
  factor?: number;
  maxMs?: number;
  /** Half-width of the jitter band; 0 turns jitter off. */
  jitter?: number;
  /** Uniform [0, 1) source; injectable so tests can pin or bound the jitter. */
  random?: () => number;
}

export class Backoff {
  private readonly initialMs: number;
  private readonly factor: number;
  private readonly maxMs: number;
  private readonly jitter: number;
  private readonly random: () => number;
  private base: number;
  private failures = 0;

  constructor(opts: BackoffOptions = {}) {
    this.initialMs = opts.initialMs ?? 1000;
    this.factor = opts.factor ?? 2;
    this.maxMs = opts.maxMs ?? 60_000;
    this.jitter = opts.jitter ?? 0.25;
    this.random = opts.random ?? Math.random;
    this.base = this.initialMs;
  }

  /** The delay before the next attempt; advances the schedule. */
  next(): number {
    const base = this.base;
    this.failures++;
    this.base = Math.min(this.maxMs, this.base * this.factor);
    const u = (this.random() * 2 - 1) * this.jitter;
    return Math.round(base * (1 + u));
  }

  /** Un-jittered delay that next() would use; for status displays. */
  peekBase(): number {
    return this.base;
  }

  /** Consecutive failures since the last reset. */
  get attempts(): number {
    return this.failures;
  }

  reset(): void {
    this.base = this.initialMs;
    this.failures = 0;
  }
}

/** Longest Retry-After we honour; a larger value is clamped so a bad header cannot park us for days. */
export const maxRetryAfterSec = 3600;

/**
 * Parses a Retry-After header: delta-seconds (what the CP sends, 2.5) or an HTTP-date
 * (RFC 9110 10.2.3). Returns whole seconds, or undefined when absent or unparseable.
 */
export function parseRetryAfter(header: string | string[] | undefined, nowMs: number = Date.now()): number | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^[0-9]{1,10}$/.test(v)) return Math.min(Number(v), maxRetryAfterSec);
  if (!/[a-z]/i.test(v)) return undefined;
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.min(Math.max(0, Math.ceil((at - nowMs) / 1000)), maxRetryAfterSec);
}
