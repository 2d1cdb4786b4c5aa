import { z } from "zod";
import { ApiError, badRequest } from "./apierror.js";
import { timestamp as timestampText } from "./validate.js";

export const obsKinds = ["metrics", "logs", "audit"] as const;
export type ObsKind = (typeof obsKinds)[number];

/** One accepted upload, decoded. */
export interface ObsBatch {
  received_at: string;
  content_type: string;
  gzip: boolean;
  wire_bytes: number;
  decoded_bytes: number;
  items: unknown[];
}

export interface ObsCounts {
  batches: number;
  items: number;
  rejected_413: number;
  rejected_429: number;
}

export interface ObsView {
  counts: ObsCounts;
  batches: ObsBatch[];
  /** Every item of the kept batches, in arrival order. */
  items: unknown[];
}

/**
 * A failure mode for the observability endpoints so agents' split (413) and retry (429)
 * logic can be tested. `too_large` rejects decoded bodies over `max_bytes`; `rate_limit`
 * answers 429 (with `Retry-After: retry_after` unless that is null) to the next `count`
 * requests, or to all while the mode is set when `count` is absent.
 */
export const failureMode = z.object({
  mode: z.enum(["none", "too_large", "rate_limit"]),
  max_bytes: z.number().int().min(0).optional(),
  retry_after: z.number().int().min(0).nullable().default(1),
  count: z.number().int().min(1).optional(),
  kinds: z.array(z.enum(obsKinds)).default([...obsKinds]),
  node_id: z.string().optional(),
});
export type FailureMode = z.infer<typeof failureMode>;

const maxBatches = 1000;

const timestamp = timestampText();
const jsonObject = z.record(z.string(), z.unknown());
// 16 KiB of message plus the "[truncated]" marker the agent appends when it cuts one.
const maxLogMessage = 16 * 1024 + "[truncated]".length;

/** Item shapes of the metrics, logs and audit uploads; unknown members are ignored. */
const itemSchemas: Record<ObsKind, z.ZodType> = {
  metrics: z.object({
    timestamp,
    group: z.enum(["node_resources", "tunnel_health", "peer_latency", "agent_stats"]),
    peer_id: z.string().nullish(),
    data: jsonObject,
  }),
  logs: z.object({
    timestamp,
    source: z.string(),
    unit: z.string(),
    message: z.string().refine((m) => Buffer.byteLength(m) <= maxLogMessage, "longer than 16 KiB (+ [truncated])"),
    severity: z.enum(["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]),
    hostname: z.string(),
  }),
  audit: z.object({
    timestamp,
    source: z.string(),
    event_type: z.string(),
    subject: jsonObject,
    object: jsonObject,
    action: z.string(),
    result: z.enum(["success", "failure", "denied"]),
    hostname: z.string(),
    raw: z.string(),
  }),
};

const logSeverities: ReadonlySet<unknown> = new Set(["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]);

/**
 * A log line the schema certainly accepts, checked without zod (at 100,000 lines/s zod's
 * generic walk costs more than everything else mockcp does with a line). It only ever says
 * yes where the schema says yes; anything else goes through the schema, for its verdict and
 * its error text, so what is rejected, and how, stays exactly the schema's.
 */
function plainLogItem(v: unknown, lastTimestamp: { text: string }): boolean {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const o = v as Record<string, unknown>;
  const { timestamp: ts, message } = o;
  if (typeof ts !== "string" || typeof o.source !== "string" || typeof o.unit !== "string" || typeof o.hostname !== "string" || !logSeverities.has(o.severity)) return false;
  if (typeof message !== "string" || (message.length * 3 > maxLogMessage && Buffer.byteLength(message) > maxLogMessage)) return false;
  // Lines of one batch mostly share their timestamp: parse each distinct one once.
  if (ts !== lastTimestamp.text) {
    if (!timestamp.safeParse(ts).success) return false;
    lastTimestamp.text = ts;
  }
  return true;
}

function checkItem(kind: ObsKind, item: unknown, where: string): void {
  const r = itemSchemas[kind].safeParse(item);
  if (!r.success) throw badRequest(`${where}: ${r.error.issues.map((i) => `${i.path.join(".") || "(item)"}: ${i.message}`).join("; ")}`);
}

/**
 * Decodes and validates a body: a JSON array of metric points, or NDJSON (one object per
 * line) for logs and audit. Any malformed item makes the whole batch a 400.
 */
export function decodeItems(kind: ObsKind, body: unknown): unknown[] {
  if (kind === "metrics") {
    if (!Array.isArray(body)) throw badRequest("metrics body must be a JSON array");
    body.forEach((item, i) => checkItem(kind, item, `metric point ${i}`));
    return body;
  }
  const text = typeof body === "string" ? body : "";
  const out: unknown[] = [];
  const lastTimestamp = { text: "" };
  for (const [i, line] of text.split("\n").entries()) {
    if (line.trim() === "") continue;
    let v: unknown;
    try {
      v = JSON.parse(line) as unknown;
    } catch {
      throw badRequest(`${kind} line ${i + 1} is not valid JSON`);
    }
    if (kind !== "logs" || !plainLogItem(v, lastTimestamp)) checkItem(kind, v, `${kind} line ${i + 1}`);
    out.push(v);
  }
  return out;
}

/** Received metrics, logs and audit per node, plus the configured failure mode. */
export class ObservabilityStore {
  readonly #byNode = new Map<string, Map<ObsKind, { counts: ObsCounts; batches: ObsBatch[] }>>();
  readonly #now: () => number;
  #failure: FailureMode = { mode: "none", retry_after: 1, kinds: [...obsKinds] };
  #failuresLeft: number | undefined;

  constructor(now: () => number) {
    this.#now = now;
  }

  #of(nodeId: string, kind: ObsKind): { counts: ObsCounts; batches: ObsBatch[] } {
    let m = this.#byNode.get(nodeId);
    if (m === undefined) {
      m = new Map();
      this.#byNode.set(nodeId, m);
    }
    let k = m.get(kind);
    if (k === undefined) {
      k = { counts: { batches: 0, items: 0, rejected_413: 0, rejected_429: 0 }, batches: [] };
      m.set(kind, k);
    }
    return k;
  }

  setFailure(f: FailureMode): FailureMode {
    if (f.mode === "too_large" && f.max_bytes === undefined) throw badRequest("max_bytes is required for mode too_large");
    this.#failure = f;
    this.#failuresLeft = f.count;
    return f;
  }

  failure(): FailureMode & { remaining: number | null } {
    return { ...this.#failure, remaining: this.#failuresLeft ?? null };
  }

  /** Throws 413/429 when the failure mode says so; counts the rejection. */
  checkFailure(nodeId: string, kind: ObsKind, decodedBytes: number): void {
    const f = this.#failure;
    if (f.mode === "none" || !f.kinds.includes(kind) || (f.node_id !== undefined && f.node_id !== nodeId)) return;
    const counts = this.#of(nodeId, kind).counts;
    if (f.mode === "too_large") {
      if (decodedBytes <= (f.max_bytes ?? Infinity)) return;
      counts.rejected_413++;
      throw new ApiError(413, "body_too_large", `${kind} body of ${decodedBytes} bytes is over the test limit of ${f.max_bytes} bytes`);
    }
    if (this.#failuresLeft !== undefined) {
      if (this.#failuresLeft <= 0) return;
      this.#failuresLeft--;
    }
    counts.rejected_429++;
    throw new ApiError(429, "rate_limited", `${kind} upload rate limited (test control)`, undefined, f.retry_after === null ? {} : { "retry-after": String(f.retry_after) });
  }

  /**
   * `items` may be given as the count and a way to decode them again: a batch of logs is then
   * kept as its text and parsed only when a test looks at it (holding every line of the last
   * 1,000 batches as objects made mockcp's garbage collector its biggest cost under a flood).
   */
  record(nodeId: string, kind: ObsKind, batch: Omit<ObsBatch, "received_at" | "items">, items: unknown[] | { count: number; decode: () => unknown[] }): ObsBatch {
    const k = this.#of(nodeId, kind);
    const full = { received_at: new Date(this.#now()).toISOString(), ...batch } as ObsBatch;
    if (Array.isArray(items)) full.items = items;
    else {
      let decoded: unknown[] | undefined;
      Object.defineProperty(full, "items", { enumerable: true, get: () => (decoded ??= items.decode()) });
    }
    k.batches.push(full);
    if (k.batches.length > maxBatches) k.batches.shift();
    k.counts.batches++;
    k.counts.items += Array.isArray(items) ? items.length : items.count;
    return full;
  }

  view(nodeId: string, kind: ObsKind): ObsView {
    const k = this.#of(nodeId, kind);
    return { counts: { ...k.counts }, batches: k.batches, items: k.batches.flatMap((b) => b.items) };
  }

  clear(nodeId: string, kind: ObsKind): void {
    this.#byNode.get(nodeId)?.delete(kind);
  }
}
