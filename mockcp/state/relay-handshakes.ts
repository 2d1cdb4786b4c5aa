// Bookkeeping for relaying a pair when no handshake follows (docs/mockcp.md#relay-sessions): since
// when each node has been online with an endpoint, and what each side last said in `tunnel_health`
// about its tunnel to the other. Pure: no state of mockcp's own, so the rule can be tested alone.

/** One side's latest `tunnel_health` point about the other. */
export interface TunnelReport {
  /** The point's collection time (ms). */
  at: number;
  /** `handshake_succeeded`: a handshake within the agent's freshness window (180 s). */
  handshake: boolean;
}

export const pairKey = (a: string, b: string): string => (a < b ? `${a}|${b}` : `${b}|${a}`);
const reportKey = (reporter: string, peer: string): string => `${reporter}>${peer}`;

export class HandshakeWatch {
  /** How long a pair must go without a handshake, counted from when both were online with endpoints. */
  graceMs = 60_000;
  /** node id → since when it has been online with an endpoint. */
  readonly #since = new Map<string, number>();
  /** `reporter>peer` → the reporter's latest point about the peer. */
  readonly #reports = new Map<string, TunnelReport>();
  /** pair → the latest time either side reported a handshake: the grace starts again from there. */
  readonly #handshakeAt = new Map<string, number>();

  /** Notes whether `nodeId` is online with an endpoint; the first `true` after a `false` starts its clock. */
  online(nodeId: string, yes: boolean, now: number): void {
    if (!yes) this.#since.delete(nodeId);
    else if (!this.#since.has(nodeId)) this.#since.set(nodeId, now);
  }

  /** Records `reporter`'s point about `peer`; an older point than the one kept is ignored. */
  report(reporter: string, peer: string, handshake: boolean, at: number): void {
    const key = reportKey(reporter, peer);
    const kept = this.#reports.get(key);
    if (kept !== undefined && kept.at > at) return;
    this.#reports.set(key, { at, handshake });
    if (handshake) {
      const pair = pairKey(reporter, peer);
      this.#handshakeAt.set(pair, Math.max(at, this.#handshakeAt.get(pair) ?? at));
    }
  }

  /**
   * True when `a` and `b` need a relay: both online with endpoints, neither side's latest point
   * shows a handshake, and at least one side reported "no handshake" a full grace period after
   * both came online (and after the last handshake either side saw). With no point at all there
   * is no evidence, so no relay.
   */
  due(a: string, b: string): boolean {
    const sa = this.#since.get(a);
    const sb = this.#since.get(b);
    if (sa === undefined || sb === undefined) return false;
    const start = Math.max(sa, sb, this.#handshakeAt.get(pairKey(a, b)) ?? sa);
    const reports = [this.#reports.get(reportKey(a, b)), this.#reports.get(reportKey(b, a))].filter((r) => r !== undefined);
    if (reports.some((r) => r.handshake)) return false;
    return reports.some((r) => r.at >= start + this.graceMs);
  }

  /** Every pair some side has reported on, once each. */
  pairs(): [string, string][] {
    const seen = new Map<string, [string, string]>();
    for (const key of this.#reports.keys()) {
      const [reporter = "", peer = ""] = key.split(">");
      seen.set(pairKey(reporter, peer), reporter < peer ? [reporter, peer] : [peer, reporter]);
    }
    return [...seen.values()];
  }

  /** Drops what is kept about a node that left the mesh for good. */
  forget(nodeId: string): void {
    this.#since.delete(nodeId);
    for (const key of [...this.#reports.keys()]) if (key.startsWith(`${nodeId}>`) || key.endsWith(`>${nodeId}`)) this.#reports.delete(key);
    for (const key of [...this.#handshakeAt.keys()]) if (key.startsWith(`${nodeId}|`) || key.endsWith(`|${nodeId}`)) this.#handshakeAt.delete(key);
  }
}
