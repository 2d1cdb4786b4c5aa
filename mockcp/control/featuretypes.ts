/** Shapes the control API returns for secrets, reports, executions, observability, artifacts, tunnels and integrity (re-exported by client.ts). */
export type { ArtifactInfo } from "../state/artifacts.js";
export type { TunnelRecord } from "../state/callbacks.js";
export type { ExecutionRecord } from "../state/executions.js";
export type { FailureMode, ObsBatch, ObsCounts, ObsKind, ObsView } from "../state/observability.js";
export type { PeerOverride } from "../state/overrides.js";
export type { ReportEntry } from "../state/reports.js";
export type { SecretRecord, SecretRef, SecretResponse } from "../state/secrets.js";

export interface SecretChange {
  secret_refs: { key: string; version: number }[];
  /** The `node_secrets_updated` event pushed, or null with `push: false`. */
  event_id: string | null;
}

export interface ActionRequestInput {
  action: string;
  type?: "builtin" | "hook";
  parameters?: Record<string, string | number | boolean>;
  timeout?: string;
  checksum?: string;
  triggered_by?: { type?: string; session_id?: string; user_id?: string; email?: string };
  execution_id?: string;
  event_id?: string;
}

export interface ActionPushed {
  execution_id: string;
  event_id: string;
  payload: Record<string, unknown>;
  delivered: number;
}

export interface FailureModeInput {
  mode: "none" | "too_large" | "rate_limit";
  /** too_large: decoded bodies over this many bytes get 413. */
  max_bytes?: number;
  /** rate_limit: Retry-After seconds (default 1); null sends no header. */
  retry_after?: number | null;
  /** rate_limit: only the next `count` requests get 429. */
  count?: number;
  kinds?: ("metrics" | "logs" | "audit")[];
  node_id?: string;
}

/** The state document (GET /v1/nodes/{id}/state) as a node gets it. */
export interface StateDocument {
  peers: { id: string; public_key: string; mesh_ip: string; endpoint: string; allowed_ips: string[]; psk: string }[];
  policies: { id: string; rules: unknown[] }[];
  signing_keys: { current: string; previous: string | null; transition_expires: string | null };
  metadata: Record<string, string>;
  data: { key: string; content_type: string; payload: unknown; version: number; updated_at: string }[];
  secret_refs: { key: string; version: number }[];
}
