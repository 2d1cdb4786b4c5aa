import { z } from "zod";
import { checksum, duration, ipEndpoint, parseBody, timestamp as timestampText } from "./validate.js";

const timestamp = timestampText();

const readyBody = z.object({ listen_addr: ipEndpoint(), timestamp });
const closedBody = z.object({
  reason: z.enum(["expired", "revoked", "shutdown", "error"]),
  duration: duration("12m3s"),
  timestamp,
});
const violationBody = z.object({
  type: z.enum(["binary", "hook"]),
  path: z.string().min(1),
  expected_checksum: z.string().regex(checksum, "must be sha256:<64 lowercase hex>"),
  actual_checksum: z.string().regex(checksum, "must be sha256:<64 lowercase hex>"),
  detail: z.string(),
  timestamp,
});

export interface Received<T = unknown> {
  received_at: string;
  body: T;
}

export interface TunnelRecord {
  session_id: string;
  ready: Received[];
  closed: Received[];
}

/** Tunnel session callbacks and integrity violations per node, recorded for tests. */
export class CallbackStore {
  readonly #tunnels = new Map<string, Map<string, TunnelRecord>>();
  readonly #violations = new Map<string, Received[]>();
  readonly #now: () => number;

  constructor(now: () => number) {
    this.#now = now;
  }

  #received(body: unknown): Received {
    return { received_at: new Date(this.#now()).toISOString(), body };
  }

  tunnel(nodeId: string, sessionId: string, what: "ready" | "closed", raw: unknown): void {
    if (what === "ready") parseBody(readyBody, raw);
    else parseBody(closedBody, raw);
    let m = this.#tunnels.get(nodeId);
    if (m === undefined) {
      m = new Map();
      this.#tunnels.set(nodeId, m);
    }
    let rec = m.get(sessionId);
    if (rec === undefined) {
      rec = { session_id: sessionId, ready: [], closed: [] };
      m.set(sessionId, rec);
    }
    rec[what].push(this.#received(raw));
  }

  violation(nodeId: string, raw: unknown): void {
    parseBody(violationBody, raw);
    let list = this.#violations.get(nodeId);
    if (list === undefined) {
      list = [];
      this.#violations.set(nodeId, list);
    }
    list.push(this.#received(raw));
    if (list.length > 1000) list.shift();
  }

  tunnels(nodeId: string): TunnelRecord[] {
    return [...(this.#tunnels.get(nodeId)?.values() ?? [])];
  }

  violations(nodeId: string): Received[] {
    return this.#violations.get(nodeId) ?? [];
  }
}
