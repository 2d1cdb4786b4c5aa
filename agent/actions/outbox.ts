import { createHash } from "node:crypto";
import { readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { PlexdError } from "../../proto/lib/errors.js";
import { Backoff } from "../controlplane/backoff.js";
import type { CpClient } from "../controlplane/http.js";
import type { DataWriter } from "../util/atomic.js";
import type { Logger } from "../util/log.js";
import type { TriggeredBy } from "./request.js";

// Results that are never lost (docs/actions.md "Delivery"): each is written to
// data_dir/executions/pending/<execution_id>.json before its first attempt and retried —
// 1 s, ×2, capped at 5 min, ±25% jitter, without limit — until the control plane takes it
// (2xx) or says it never will (404 unknown execution, 400, 403); pending results are sent again
// at start-up and after every reconnect of the event stream.

export interface ActionResult {
  execution_id: string;
  status: "success" | "failure" | "timeout" | "cancelled" | "error";
  exit_code: number;
  stdout: string;
  stderr: string;
  duration: string;
  finished_at: string;
  triggered_by: TriggeredBy;
}

export interface OutboxDeps {
  dataDir: string;
  writer: DataWriter;
  cp: CpClient;
  /** The current identity (it may change after re-registration). */
  identity: () => { nodeId: string; token: string };
  log: Logger;
  sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Tests shorten the schedule. */
  backoff?: () => Backoff;
}

/** The file a result waits in; ids that are no plain file name are hashed. */
export function pendingFileName(executionId: string): string {
  return /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(executionId) ? `${executionId}.json` : `x-${createHash("sha256").update(executionId).digest("hex").slice(0, 32)}.json`;
}

async function post(d: Pick<OutboxDeps, "cp" | "identity">, path: string, body: unknown, signal: AbortSignal) {
  const { nodeId, token } = d.identity();
  return d.cp.request({ method: "POST", path: `/v1/nodes/${encodeURIComponent(nodeId)}/${path}`, token, body, signal });
}

const final = (status: number): boolean => (status >= 200 && status < 300) || status === 404 || status === 400 || status === 403;

export class ResultOutbox {
  readonly #d: OutboxDeps;
  readonly #dir: string;
  /** Results with a delivery loop running, and how to cut its wait short. */
  readonly #active = new Map<string, { wake: AbortController }>();
  readonly #stop = new AbortController();
  readonly #loops = new Set<Promise<void>>();
  delivered = 0;

  constructor(d: OutboxDeps) {
    this.#d = d;
    this.#dir = join(d.dataDir, "executions", "pending");
  }

  get pending(): number {
    return this.#active.size;
  }

  /**
   * Persists `result`, then delivers it once `after` (its ack) settled; resolves once it is on
   * disk. `delivered` runs once the control plane has answered for good (service.restart acts
   * only then); it lives in memory only.
   */
  async add(result: ActionResult, after: Promise<unknown> = Promise.resolve(), delivered?: () => void): Promise<void> {
    await this.#d.writer.writeJsonAtomic(join(this.#dir, pendingFileName(result.execution_id)), result);
    void after.finally(() => this.#start(result, delivered));
  }

  /** Start-up: every result left pending by an earlier run. */
  async resume(): Promise<void> {
    const names = await readdir(this.#dir).catch(() => [] as string[]);
    for (const name of names.filter((n) => n.endsWith(".json") && !n.startsWith("."))) {
      try {
        const r = JSON.parse(await readFile(join(this.#dir, name), "utf8")) as ActionResult;
        if (typeof r.execution_id !== "string") throw new Error("no execution_id");
        this.#start(r);
      } catch (err) {
        this.#d.log.error({ file: name, err: PlexdError.from(err).message }, "pending action result unreadable; left in place");
      }
    }
  }

  /** After a reconnect: every waiting result is tried now. */
  retryNow(): void {
    for (const a of this.#active.values()) a.wake.abort();
  }

  #start(result: ActionResult, delivered?: () => void): void {
    if (this.#active.has(result.execution_id)) return;
    const entry = { wake: new AbortController() };
    this.#active.set(result.execution_id, entry);
    const loop = this.#deliver(result, entry, delivered).finally(() => {
      this.#active.delete(result.execution_id);
      this.#loops.delete(loop);
    });
    this.#loops.add(loop);
  }

  async #deliver(result: ActionResult, entry: { wake: AbortController }, delivered?: () => void): Promise<void> {
    const backoff = this.#d.backoff?.() ?? new Backoff({ maxMs: 300_000 });
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      const res = await post(this.#d, `executions/${encodeURIComponent(result.execution_id)}/result`, result, signal).catch((err: unknown) => ({ status: 0, body: PlexdError.from(err).message }));
      if (final(res.status)) {
        if (res.status >= 300) this.#d.log.warn({ execution_id: result.execution_id, status: res.status }, "action result refused by the control plane; dropped");
        else {
          this.delivered++;
          this.#d.log.info({ execution_id: result.execution_id, status: result.status, attempts: backoff.attempts + 1 }, "action result delivered");
        }
        await rm(join(this.#dir, pendingFileName(result.execution_id)), { force: true });
        delivered?.();
        return;
      }
      const wait = backoff.next();
      this.#d.log.warn({ execution_id: result.execution_id, status: res.status, retry_in_ms: wait }, "action result not delivered; kept and retried");
      try {
        await this.#d.sleep(wait, AbortSignal.any([signal, entry.wake.signal]));
      } catch {
        if (entry.wake.signal.aborted) {
          entry.wake = new AbortController();
          backoff.reset();
        }
      }
    }
  }

  /** Stops the delivery loops; what is pending stays on disk for the next start. */
  async close(): Promise<void> {
    this.#stop.abort();
    await Promise.all(this.#loops);
  }
}

/** POST …/ack with the standard backoff for at most 30 s in total; a 404 drops it at once. */
export async function sendAck(
  d: Pick<OutboxDeps, "cp" | "identity" | "log" | "sleep">,
  body: { execution_id: string; status: "accepted" | "rejected"; reason: string },
  signal: AbortSignal,
  budgetMs = 30_000,
): Promise<boolean> {
  const backoff = new Backoff();
  const until = Date.now() + budgetMs;
  for (;;) {
    const res = await post(d, `executions/${encodeURIComponent(body.execution_id)}/ack`, body, signal).catch((err: unknown) => ({ status: 0, body: PlexdError.from(err).message }));
    if (res.status >= 200 && res.status < 300) return true;
    if (res.status === 404 || (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429)) {
      d.log.warn({ execution_id: body.execution_id, status: res.status }, "action ack refused by the control plane; dropped");
      return false;
    }
    const wait = backoff.next();
    if (Date.now() + wait > until || signal.aborted) {
      d.log.warn({ execution_id: body.execution_id, status: res.status }, "action ack not delivered within 30s; dropped");
      return false;
    }
    try {
      await d.sleep(wait, signal);
    } catch {
      return false;
    }
  }
}
