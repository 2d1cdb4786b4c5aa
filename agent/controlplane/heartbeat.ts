import { PlexdError, isCancellation } from "../../proto/lib/errors.js";
import type { Logger } from "../util/log.js";
import type { CpClient } from "./http.js";
import { describeError } from "./http.js";

// POST /v1/nodes/{id}/heartbeat (docs/mockcp.md#control-plane-api-what-agents-use, docs/architecture.md#lifecycle):
// one at start, then every interval. A failure waits for the next tick (no immediate
// retry); 401 or 404 means the identity was rejected.

export interface HeartbeatPayload {
  node_id: string;
  timestamp: string;
  status: "healthy" | "degraded";
  uptime: string;
  binary_checksum: string;
  mesh?: { interface: string; peer_count: number; listen_port: number };
  nat?: { public_endpoint: string; type: string };
}

export interface HeartbeatOptions {
  cp: CpClient;
  nodeId: string;
  token: () => string;
  /** Read before each wait, so a reloaded interval applies from the next beat. */
  intervalMs: number | (() => number);
  payload: () => Omit<HeartbeatPayload, "node_id" | "timestamp">;
  sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  now: () => number;
  signal: AbortSignal;
  log: Logger;
  onResult: (r: { ok: boolean; at: number; error?: string }) => void;
  onReconcileHint: () => void;
  onRotateKeysHint: () => void;
  onIdentityRejected: (status: number) => void;
}

export async function sendHeartbeat(opts: HeartbeatOptions): Promise<void> {
  const at = opts.now();
  const body: HeartbeatPayload = { node_id: opts.nodeId, timestamp: new Date(at).toISOString(), ...opts.payload() };
  try {
    const res = await opts.cp.request<{ reconcile?: boolean; rotate_keys?: boolean }>({
      method: "POST",
      path: `/v1/nodes/${encodeURIComponent(opts.nodeId)}/heartbeat`,
      body,
      token: opts.token(),
      signal: opts.signal,
    });
    if (res.status >= 200 && res.status < 300) {
      opts.onResult({ ok: true, at });
      if (res.body.reconcile === true) opts.onReconcileHint();
      if (res.body.rotate_keys === true) opts.onRotateKeysHint();
      return;
    }
    if (res.status === 401 || res.status === 404) opts.onIdentityRejected(res.status);
    throw new PlexdError("unavailable", `heartbeat: ${describeError(res)}`);
  } catch (err) {
    if (isCancellation(err) && opts.signal.aborted) throw err;
    const message = PlexdError.from(err).message;
    opts.onResult({ ok: false, at, error: message });
    opts.log.warn({ err: message }, "heartbeat failed; next tick retries");
  }
}

export async function runHeartbeatLoop(opts: HeartbeatOptions): Promise<void> {
  while (!opts.signal.aborted) {
    const started = opts.now();
    await sendHeartbeat(opts);
    const elapsed = opts.now() - started;
    try {
      const interval = typeof opts.intervalMs === "function" ? opts.intervalMs() : opts.intervalMs;
      await opts.sleep(Math.max(0, interval - elapsed), opts.signal);
    } catch (err) {
      if (opts.signal.aborted) return;
      throw err;
    }
  }
}
