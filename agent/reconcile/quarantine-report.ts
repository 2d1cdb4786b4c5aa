import type { Correction } from "./drift.js";

// Quarantine reaches the control plane through the drift report (docs/mockcp.md#control-plane-api-what-agents-use), the
// contract's one channel for "the node did not apply what you sent": a quarantined peer as
// `peer_removed` with the reason, a released one as `peer_added`. The latest word per peer is
// kept until a report carrying it was delivered, so a peer that flaps is reported as it ends up.

const maxDetail = 512;

export class QuarantineReport {
  #pending = new Map<string, Correction>();

  note(peerId: string, reason: string | undefined): void {
    const detail = reason === undefined ? `peer ${peerId}: admitted after quarantine` : `peer ${peerId}: quarantined, kept out of the kernel: ${reason}`;
    this.#pending.set(peerId, { type: reason === undefined ? "peer_added" : "peer_removed", detail: detail.length > maxDetail ? `${detail.slice(0, maxDetail - 1)}…` : detail });
  }

  get size(): number {
    return this.#pending.size;
  }

  /** Everything pending; hand it back with `undelivered` if the report failed. */
  take(): Map<string, Correction> {
    const out = this.#pending;
    this.#pending = new Map();
    return out;
  }

  /** Puts back what a failed report carried, unless something newer was noted meanwhile. */
  undelivered(taken: Map<string, Correction>): void {
    for (const [id, c] of taken) if (!this.#pending.has(id)) this.#pending.set(id, c);
  }
}
