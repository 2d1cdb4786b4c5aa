// The auditd source (docs/telemetry.md#audit): privhelper's WatchAudit stream of kernel
// records, grouped by serial and normalised. Where the kernel cannot deliver records to
// privhelper (no audit in the kernel, no CAP_AUDIT_READ, a container's own network namespace,
// socat missing) the stream fails with privhelper's reason: that becomes the health condition
// `audit_unavailable` and the source's state, and the watch is tried again with a backoff.
// Records are not replayable: those the kernel sends while no watch is open are lost.
import { PlexdError, isCancellation } from "../../../proto/lib/errors.js";
import type { HealthRegistry } from "../../health/registry.js";
import type { PrivClient } from "../../privclient/client.js";
import type { Clock } from "../../util/clock.js";
import type { Logger } from "../../util/log.js";
import type { AuditEvent } from "./event.js";
import { AuditGrouper } from "./group.js";
import { normaliseAuditd } from "./normalise.js";
import type { AuditRecord } from "./record.js";

export const unavailableCode = "audit_unavailable";

export interface SourceView {
  name: "auditd" | "kubernetes";
  /** connecting, receiving, unavailable; for kubernetes: reading, missing, error, disabled. */
  state: string;
  detail: string;
  /** Events pushed from this source since the agent started. */
  events_total: number;
  /** Kernel records received (auditd) or lines read (kubernetes). */
  records_total: number;
  /** Records or lines skipped as malformed. */
  malformed_total: number;
  last_event_at: string | null;
}

export interface KernelDeps {
  priv: Pick<PrivClient, "watchAudit">;
  health: HealthRegistry;
  clock: Clock;
  log: Logger;
  hostname: string;
  push(event: AuditEvent): void;
  /** Backoff bounds for re-opening the watch. */
  retryMs?: { min: number; max: number };
}

export class KernelAuditSource {
  readonly view: SourceView = { name: "auditd", state: "connecting", detail: "", events_total: 0, records_total: 0, malformed_total: 0, last_event_at: null };
  readonly #d: KernelDeps;
  readonly #grouper: AuditGrouper;

  constructor(deps: KernelDeps) {
    this.#d = deps;
    this.#grouper = new AuditGrouper({
      now: () => deps.clock.now(),
      emit: (g) => {
        const ev = normaliseAuditd(g, deps.hostname);
        this.view.events_total++;
        this.view.last_event_at = new Date(deps.clock.now()).toISOString();
        deps.push(ev);
      },
      malformed: (r, why) => this.#malformed(r, why),
    });
  }

  /** Watches until `signal` aborts; never throws. */
  async run(signal: AbortSignal): Promise<void> {
    const { min, max } = this.#d.retryMs ?? { min: 5_000, max: 300_000 };
    let delay = min;
    const sweeper = setInterval(() => this.#grouper.sweep(), 250);
    try {
      while (!signal.aborted) {
        let got = 0;
        try {
          this.view.state = "connecting";
          for await (const rec of this.#d.priv.watchAudit({}, { signal })) {
            if (got++ === 0) this.#up();
            delay = min;
            this.view.records_total++;
            this.#grouper.add({ type: rec.type, serial: rec.serial, text: rec.text });
          }
          // privhelper ended the stream cleanly (it is stopping): open it again, at once if it had delivered.
          this.#grouper.flush();
          if (got > 0) continue;
        } catch (err) {
          this.#grouper.flush();
          if (signal.aborted || isCancellation(err)) break;
          this.#down(PlexdError.from(err));
        }
        await this.#d.clock.sleep(delay, signal).catch(() => undefined);
        delay = Math.min(max, delay * 2);
      }
    } finally {
      clearInterval(sweeper);
      this.#grouper.flush();
    }
  }

  #up(): void {
    this.view.state = "receiving";
    this.view.detail = "";
    this.#d.health.clear(unavailableCode);
    this.#d.log.info("kernel audit records: watching");
  }

  #down(e: PlexdError): void {
    const detail = e.code === "unimplemented" ? "privhelper is too old for WatchAudit" : e.message;
    if (this.view.detail !== detail) this.#d.log.warn({ code: e.code, err: detail }, "kernel audit records cannot be read; retrying");
    this.view.state = "unavailable";
    this.view.detail = detail;
    // Info, not warning: the mesh is unaffected and many hosts (containers) simply cannot
    // deliver audit records; the condition says so without marking the node degraded.
    this.#d.health.set(unavailableCode, "info", `kernel audit records cannot be read: ${detail}`);
  }

  #malformed(r: AuditRecord, why: string): void {
    const n = ++this.view.malformed_total;
    // The first, then every 100th: a stream of garbage must not flood the agent's log.
    if (n === 1 || n % 100 === 0) this.#d.log.warn({ type: r.type, malformed_total: n, text: r.text.slice(0, 200) }, `malformed audit record skipped: ${why}`);
  }
}
