import { randomUUID } from "node:crypto";
import { formatDuration } from "../../proto/lib/duration.js";
import { PlexdError } from "../../proto/lib/errors.js";
import { capText } from "../../proto/lib/output-cap.js";
import type { Config } from "../config/schema.js";
import type { Logger } from "../util/log.js";
import type { AckedIds } from "./acked-ids.js";
import { builtins, type BuiltinHost } from "./builtins.js";
import { announcedParam, checkParameters, type ActionDef } from "./catalog.js";
import type { ActionResult, ResultOutbox } from "./outbox.js";
import { parseActionRequest, type ActionRequest, type TriggeredBy } from "./request.js";

// Admission, execution and results of actions (docs/actions.md). Requests are admitted one at
// a time, in arrival order, so the concurrency limit is exact; each admitted execution then
// runs on its own. Remote and local runs share every step but the ack and the replay memory.

export type RejectReason = "shutting_down" | "actions_disabled" | "unknown_action" | "invalid_parameters" | "integrity_violation" | "max_concurrent_reached";

/** A hook as admission and execution see it (agent/hooks provides them). */
export interface HookRuntime {
  /** Declared hooks by name (without `hooks/`). */
  get(name: string): (ActionDef & { timeoutMs: number }) | undefined;
  /** Capability entries of every declared hook. */
  announced(): unknown[];
  /** Fresh check of the file against the announced checksum and the request's, if given. */
  verify(name: string, requestChecksum: string | undefined, signal: AbortSignal): Promise<{ ok: true } | { ok: false; detail: string }>;
  run(name: string, run: HookRun, signal: AbortSignal): Promise<{ exitCode: number; stdout: string; stderr: string; timedOut: boolean }>;
}

export interface HookRun {
  executionId: string;
  params: Readonly<Record<string, string>>;
  timeoutMs: number;
  maxOutputBytes: number;
}

export interface ManagerDeps {
  config: () => Config;
  acked: AckedIds;
  outbox: ResultOutbox;
  /** Sends an ack (with its own retries); resolves when it is done with it. */
  ack: (body: { execution_id: string; status: "accepted" | "rejected"; reason: string }) => Promise<unknown>;
  host: BuiltinHost;
  hooks?: HookRuntime;
  log: Logger;
  now: () => number;
}

export interface ExecutionView {
  execution_id: string;
  action: string;
  status: "running" | ActionResult["status"];
  started_at: number;
  finished_at?: number;
  exit_code?: number;
  triggered_by: TriggeredBy;
}

interface Admitted {
  request: ActionRequest;
  def: ActionDef;
  params: Record<string, string>;
  timeoutMs: number;
}

const keepFinished = 50;

export class ActionManager {
  readonly #d: ManagerDeps;
  #chain: Promise<void> = Promise.resolve();
  /** Ids being admitted or running: a duplicate arriving meanwhile is dropped like a replay. */
  readonly #inflight = new Set<string>();
  readonly #running = new Map<string, { view: ExecutionView; abort: AbortController; done: Promise<ActionResult> }>();
  readonly #finished: ExecutionView[] = [];
  #stopping = false;
  readonly counts = { accepted: 0, rejected: 0, dropped: 0 };

  constructor(d: ManagerDeps) {
    this.#d = d;
  }

  /** Every action this node can run, for the capability announcement. */
  capabilities(): { builtin_actions: unknown[]; hooks: unknown[] } {
    return {
      builtin_actions: [...builtins.values()].map((b) => ({ name: b.name, description: b.description, parameters: b.parameters.map(announcedParam) })),
      hooks: this.#d.hooks?.announced() ?? [],
    };
  }

  executions(): ExecutionView[] {
    return [...[...this.#running.values()].map((r) => r.view), ...this.#finished];
  }

  get running(): number {
    return this.#running.size;
  }

  /** An action_request from the control plane (verified, not yet seen by the event replay guard). */
  handleRequest(eventId: string, payload: unknown): void {
    const run = this.#chain.then(() => this.#admitRemote(eventId, payload));
    this.#chain = run.catch((err: unknown) => this.#d.log.error({ event_id: eventId, err: PlexdError.from(err).message }, "action_request not handled"));
  }

  /** Resolves once every request handed in so far has been admitted or refused (tests, shutdown). */
  settled(): Promise<void> {
    return this.#chain;
  }

  async #admitRemote(eventId: string, payload: unknown): Promise<void> {
    const { log } = this.#d;
    const parsed = parseActionRequest(payload);
    if (!parsed.ok) {
      this.counts.dropped++;
      log.warn({ event_id: eventId, problems: parsed.problems }, "action_request without a usable execution_id; not acknowledged");
      return;
    }
    const req = parsed.request;
    const id = req.execution_id;
    if (this.#d.acked.has(id) || this.#inflight.has(id)) {
      this.counts.dropped++;
      log.warn({ event_id: eventId, execution_id: id }, "action_request for an execution already acknowledged; dropped");
      return;
    }
    this.#inflight.add(id);
    try {
      const verdict = await this.#admit(req, parsed.problems);
      // On disk before the ack goes out and before anything runs: a replay never runs it twice.
      await this.#d.acked.record(id);
      if ("reason" in verdict) {
        this.counts.rejected++;
        log.warn({ execution_id: id, action: req.action, reason: verdict.reason, problems: verdict.problems }, "action rejected");
        this.#inflight.delete(id);
        void this.#d.ack({ execution_id: id, status: "rejected", reason: verdict.reason });
        return;
      }
      this.counts.accepted++;
      const acked = this.#d.ack({ execution_id: id, status: "accepted", reason: "" });
      void this.#start(verdict, acked);
    } catch (err) {
      this.#inflight.delete(id);
      throw err;
    }
  }

  /** Checks 2–7 of admission; `problems` are those parsing found already. */
  async #admit(req: ActionRequest, problems: string[]): Promise<Admitted | { reason: RejectReason; problems: string[] }> {
    const cfg = this.#d.config();
    if (this.#stopping) return { reason: "shutting_down", problems: [] };
    const isHook = req.action.startsWith("hooks/");
    if (!cfg.actions.enabled || (isHook && !cfg.hooks.enabled)) return { reason: "actions_disabled", problems: [] };
    const hook = isHook ? this.#d.hooks?.get(req.action.slice("hooks/".length)) : undefined;
    const def: (ActionDef & { timeoutMs?: number }) | undefined = isHook ? hook : builtins.get(req.action);
    if (def === undefined || def.type !== req.type) return { reason: "unknown_action", problems: [`${req.action} (${req.type}) is not an action of this node`] };
    const params: Record<string, string> = {};
    const bad = [...problems, ...checkParameters(def.parameters, req.parameters, params)];
    if (bad.length > 0) return { reason: "invalid_parameters", problems: bad };
    if (isHook) {
      const v = await this.#d.hooks!.verify(req.action.slice("hooks/".length), req.checksum, AbortSignal.timeout(10_000));
      if (!v.ok) return { reason: "integrity_violation", problems: [v.detail] };
    }
    if (this.#running.size >= cfg.actions.max_concurrent) return { reason: "max_concurrent_reached", problems: [`${this.#running.size} running, limit ${cfg.actions.max_concurrent}`] };
    const wanted = req.timeoutMs ?? def.timeoutMs ?? cfg.actions.default_timeout.ms;
    return { request: req, def, params, timeoutMs: Math.min(wanted, cfg.actions.max_action_timeout.ms) };
  }

  /**
   * A local run (plexd actions run): the same admission without ack or replay memory. Resolves
   * once it started, with the result to come; rejects with the reason as `failed_precondition`.
   */
  async runLocal(o: { name: string; parameters: Record<string, unknown>; timeoutMs?: number; triggeredBy: TriggeredBy }): Promise<{ executionId: string; result: Promise<ActionResult> }> {
    const req: ActionRequest = {
      execution_id: `local_${randomUUID()}`,
      action: o.name,
      type: o.name.startsWith("hooks/") ? "hook" : "builtin",
      parameters: o.parameters,
      ...(o.timeoutMs === undefined ? {} : { timeoutMs: o.timeoutMs }),
      triggered_by: o.triggeredBy,
    };
    // Admitted and started in one step of the chain, so the concurrency limit stays exact.
    const started = this.#chain.then(async () => {
      const verdict = await this.#admit(req, []);
      if ("reason" in verdict) return verdict;
      this.#inflight.add(req.execution_id);
      return { executionId: req.execution_id, result: this.#start(verdict, Promise.resolve()) };
    });
    this.#chain = started.then(
      () => undefined,
      () => undefined,
    );
    const outcome = await started;
    if ("reason" in outcome) {
      this.#d.log.warn({ execution_id: req.execution_id, action: req.action, reason: outcome.reason, problems: outcome.problems }, "local action rejected");
      throw new PlexdError("failed_precondition", `${outcome.reason}${outcome.problems.length > 0 ? `: ${outcome.problems.join("; ")}` : ""}`);
    }
    return outcome;
  }

  #start(a: Admitted, acked: Promise<unknown>): Promise<ActionResult> {
    const { log } = this.#d;
    const id = a.request.execution_id;
    const view: ExecutionView = { execution_id: id, action: a.request.action, status: "running", started_at: this.#d.now(), triggered_by: a.request.triggered_by };
    const abort = new AbortController();
    log.info({ execution_id: id, action: a.request.action, timeout_ms: a.timeoutMs, triggered_by: a.request.triggered_by.type }, "action started");
    const done = this.#execute(a, abort.signal).then(async (r) => {
      const result: ActionResult = {
        execution_id: id,
        status: r.status,
        exit_code: r.status === "success" || r.status === "failure" ? r.exitCode : -1,
        stdout: r.stdout,
        stderr: r.stderr,
        duration: `${((this.#d.now() - view.started_at) / 1000).toFixed(2)}s`,
        finished_at: new Date(this.#d.now()).toISOString(),
        triggered_by: a.request.triggered_by,
      };
      Object.assign(view, { status: result.status, finished_at: this.#d.now(), exit_code: result.exit_code });
      this.#running.delete(id);
      this.#inflight.delete(id);
      this.#finished.unshift(view);
      this.#finished.length = Math.min(this.#finished.length, keepFinished);
      log.info({ execution_id: id, action: a.request.action, status: result.status, exit_code: result.exit_code, duration: result.duration }, "action finished");
      const after = r.after;
      const delivered = after === undefined ? undefined : () => void after().catch((err: unknown) => log.error({ execution_id: id, err: PlexdError.from(err).message }, "action's follow-up after its result failed"));
      await this.#d.outbox.add(result, acked, delivered).catch((err: unknown) => log.error({ execution_id: id, err: PlexdError.from(err).message }, "action result could not be persisted; sending it once"));
      return result;
    });
    this.#running.set(id, { view, abort, done });
    return done;
  }

  async #execute(a: Admitted, cancel: AbortSignal): Promise<{ status: ActionResult["status"]; exitCode: number; stdout: string; stderr: string; after?: () => Promise<void> }> {
    const max = this.#d.config().actions.max_output_bytes;
    const timeout = AbortSignal.timeout(a.timeoutMs);
    const signal = AbortSignal.any([cancel, timeout]);
    const ended = (): "timeout" | "cancelled" | undefined => (cancel.aborted ? "cancelled" : timeout.aborted ? "timeout" : undefined);
    try {
      if (a.def.type === "hook") {
        const r = await this.#d.hooks!.run(a.def.name.slice("hooks/".length), { executionId: a.request.execution_id, params: a.params, timeoutMs: a.timeoutMs, maxOutputBytes: max }, cancel);
        const status = r.timedOut ? "timeout" : (ended() ?? (r.exitCode === 0 ? "success" : "failure"));
        return { status, exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr };
      }
      const b = builtins.get(a.def.name)!;
      const stopped = new Promise<never>((_, reject) => signal.addEventListener("abort", () => reject(new PlexdError("cancelled", "stopped")), { once: true }));
      const r = await Promise.race([b.run(a.params, this.#d.host, signal), stopped]);
      const doc = capText(Buffer.from(JSON.stringify(r.document) + "\n"), max);
      if (r.error !== undefined) return { status: "error", exitCode: -1, stdout: doc, stderr: capText(Buffer.from(r.error + "\n"), max) };
      return { status: r.exitCode === 0 ? "success" : "failure", exitCode: r.exitCode, stdout: doc, stderr: "", ...(r.after ? { after: r.after } : {}) };
    } catch (err) {
      const how = ended();
      if (how !== undefined) return { status: how, exitCode: -1, stdout: "", stderr: how === "timeout" ? `timed out after ${formatDuration(a.timeoutMs)}\n` : "cancelled\n" };
      const e = PlexdError.from(err);
      this.#d.log.error({ execution_id: a.request.execution_id, action: a.def.name, err: e.message }, "action failed in the agent");
      return { status: "error", exitCode: -1, stdout: "", stderr: capText(Buffer.from(e.message + "\n"), max) };
    }
  }

  /**
   * Shutdown: nothing new is admitted; running executions get `drain_timeout` to finish, the rest
   * are cancelled. Their results are on disk when this resolves.
   */
  async drain(): Promise<void> {
    this.#stopping = true;
    await this.#chain;
    const all = [...this.#running.values()];
    if (all.length === 0) return;
    const grace = this.#d.config().actions.drain_timeout.ms;
    this.#d.log.info({ running: all.length, drain_timeout_ms: grace }, "waiting for running actions");
    const timer = setTimeout(() => all.forEach((r) => r.abort.abort()), grace);
    await Promise.allSettled(all.map((r) => r.done));
    clearTimeout(timer);
  }
}
