import { z } from "zod";
import { ApiError, badRequest } from "./apierror.js";
import { duration, parseBody, timestamp } from "./validate.js";
import type { LoggedEvent } from "./eventlog.js";

const triggeredBy = z.object({
  type: z.enum(["control_plane", "session", "direct_access", "local_emergency"]),
  session_id: z.string().nullish(),
  user_id: z.string().nullish(),
  email: z.string().nullish(),
});

const ackBody = z.object({
  execution_id: z.string().min(1),
  status: z.enum(["accepted", "rejected"]),
  reason: z.enum(["", "unknown_action", "integrity_violation", "invalid_parameters", "max_concurrent_reached", "actions_disabled", "shutting_down"]).nullish(),
});

const resultBody = z.object({
  execution_id: z.string().min(1),
  status: z.enum(["success", "failure", "timeout", "cancelled", "error"]),
  exit_code: z.number().int(),
  stdout: z.string(),
  stderr: z.string(),
  duration: duration("2.34s"),
  finished_at: timestamp(),
  triggered_by: triggeredBy.nullish(),
});

export interface Received<T = unknown> {
  received_at: string;
  body: T;
}

/** One execution as the control API shows it. */
export interface ExecutionRecord {
  execution_id: string;
  /** The action_request mockcp pushed, or null for a locally started run it only heard of. */
  request: { event_id: string; issued_at: string; payload: Record<string, unknown> } | null;
  acks: Received[];
  /** The first result recorded; later deliveries only raise `result_deliveries`. */
  result: Received | null;
  result_deliveries: number;
}

const maxStdio = 65536;

/**
 * Executions per node. An execution is known once mockcp has pushed an
 * `action_request` carrying its id to that node; acks and results for other ids get 404,
 * except results of local runs, which are always recorded.
 */
export class ExecutionStore {
  readonly #byNode = new Map<string, Map<string, ExecutionRecord>>();
  readonly #now: () => number;

  constructor(now: () => number) {
    this.#now = now;
  }

  #of(nodeId: string): Map<string, ExecutionRecord> {
    let m = this.#byNode.get(nodeId);
    if (m === undefined) {
      m = new Map();
      this.#byNode.set(nodeId, m);
    }
    return m;
  }

  /** Event sink: remembers every action_request published to a node. */
  observe(nodeId: string, ev: LoggedEvent): void {
    if (ev.event_type !== "action_request") return;
    const id = ev.payload["execution_id"];
    if (typeof id !== "string" || id === "") return;
    const m = this.#of(nodeId);
    const request = { event_id: ev.event_id, issued_at: new Date(ev.issuedAt).toISOString(), payload: ev.payload };
    const prev = m.get(id);
    if (prev !== undefined) prev.request = request;
    else m.set(id, { execution_id: id, request, acks: [], result: null, result_deliveries: 0 });
  }

  #checkPath(pathId: string, bodyId: string): void {
    if (pathId !== bodyId) throw badRequest(`execution_id ${bodyId} does not match the path (${pathId})`);
  }

  ack(nodeId: string, executionId: string, raw: unknown): void {
    const body = parseBody(ackBody, raw);
    this.#checkPath(executionId, body.execution_id);
    if (body.status === "rejected" && (body.reason ?? "") === "") throw badRequest("reason: required when status is rejected");
    const rec = this.#of(nodeId).get(executionId);
    if (rec?.request == null) throw new ApiError(404, "execution_not_found", `unknown execution ${executionId}`);
    rec.acks.push({ received_at: new Date(this.#now()).toISOString(), body: raw });
  }

  result(nodeId: string, executionId: string, raw: unknown): void {
    const body = parseBody(resultBody, raw);
    this.#checkPath(executionId, body.execution_id);
    for (const f of ["stdout", "stderr"] as const) {
      if (Buffer.byteLength(body[f]) > maxStdio) throw badRequest(`${f}: longer than ${maxStdio} bytes`);
    }
    const m = this.#of(nodeId);
    let rec = m.get(executionId);
    const local = executionId.startsWith("local_") || (body.triggered_by != null && body.triggered_by.type !== "control_plane");
    if (rec === undefined) {
      if (!local) throw new ApiError(404, "execution_not_found", `unknown execution ${executionId}`);
      rec = { execution_id: executionId, request: null, acks: [], result: null, result_deliveries: 0 };
      m.set(executionId, rec);
    }
    rec.result_deliveries++;
    // Idempotent: the first result wins, later deliveries (retries after a lost 200) are counted only.
    rec.result ??= { received_at: new Date(this.#now()).toISOString(), body: raw };
  }

  list(nodeId: string): ExecutionRecord[] {
    return [...this.#of(nodeId).values()];
  }

  get(nodeId: string, executionId: string): ExecutionRecord | undefined {
    return this.#of(nodeId).get(executionId);
  }
}
