import type { BadEventOptions } from "./badevents.js";
import type { LoggedRequest, RequestFilter } from "../state/requestlog.js";
import type { SigningKeysView } from "../state/keyring.js";
import type { DataEntry, Peer, Policy, Received } from "../state/store.js";
import { MockcpFeatureClient } from "./featureclient.js";

export type { EventStream, HttpResult, MockcpTarget, RequestOptions } from "./transport.js";
export * from "./featuretypes.js";

export interface NodeSummary {
  id: string;
  hostname: string;
  mesh_ip: string;
  public_key: string;
  registered_at: string;
  status: "registered" | "healthy" | "unreachable" | "offline" | "deregistered";
  deregistered_at: string | null;
  last_heartbeat_at: string | null;
  /** Open SSE streams of this node right now. */
  streams: number;
}

export interface NodeDetail extends NodeSummary {
  reported_metadata: Record<string, string>;
  capabilities: unknown;
  endpoint: { public_endpoint: string; nat_type: string; updated_at: string; relay_fallback?: boolean } | null;
  flags: { reconcile: boolean; rotate_keys: boolean };
  node_secret_key: string;
  identity_token: string;
  policies: Policy[];
  metadata: Record<string, string>;
  data: DataEntry[];
  heartbeat_count: number;
  drift_count: number;
  /** When the node went offline (peers got peer_removed), null while it is not. */
  offline_since: string | null;
  /** The node's secret index as state shows it. */
  secret_refs: { key: string; version: number }[];
  last_event_id: string | null;
}

export interface BadEventResult {
  kind: BadEventOptions["kind"];
  event_id: string | null;
  event_type: string;
  data: string | null;
  data_bytes: number;
  delivered: number;
}

export interface CapturedFrameInfo {
  seq: number;
  event_id: string | null;
  event_type: string | null;
  bytes: number;
  /** False for a frame over 64 KiB: listed, not kept, never replayed. */
  kept: boolean;
}

export interface SigningKeyRotation {
  new_signing_public_key: string;
  valid_from: string;
  transition_period: string;
  signing_keys: SigningKeysView;
  events: { node_id: string; event_id: string }[];
}


/**
 * Typed client for mockcp's test-control API (docs/mockcp.md), plus raw access to the CP
 * API for contract tests. Works over a unix socket (tests in another namespace) or a URL.
 */
export class MockcpClient extends MockcpFeatureClient {
  async ping(): Promise<void> {
    await this.call("GET", "/v1/ping");
  }

  status(): Promise<{ offline: boolean; nodes: number; active_nodes: number; signing_keys: SigningKeysView; signing_public_key: string }> {
    return this.call("GET", "/control/v1/status");
  }

  createToken(opts: { token?: string; ttlSeconds?: number; uses?: number } = {}): Promise<{ token: string; expires_at: string; uses: number }> {
    return this.call("POST", "/control/v1/tokens", {
      ...(opts.token !== undefined ? { token: opts.token } : {}),
      ...(opts.ttlSeconds !== undefined ? { ttl_seconds: opts.ttlSeconds } : {}),
      ...(opts.uses !== undefined ? { uses: opts.uses } : {}),
    });
  }

  async listTokens(): Promise<{ token: string; expires_at: string; uses_left: number; expired: boolean }[]> {
    return (await this.call<{ tokens: { token: string; expires_at: string; uses_left: number; expired: boolean }[] }>("GET", "/control/v1/tokens")).tokens;
  }

  async listNodes(): Promise<NodeSummary[]> {
    return (await this.call<{ nodes: NodeSummary[] }>("GET", "/control/v1/nodes")).nodes;
  }

  getNode(nodeId: string): Promise<NodeDetail> {
    return this.call("GET", `/control/v1/nodes/${enc(nodeId)}`);
  }

  /** The peer list (with PSKs) as `nodeId` would get it from /state. */
  async peers(nodeId: string): Promise<Peer[]> {
    return (await this.call<{ peers: Peer[] }>("GET", `/control/v1/nodes/${enc(nodeId)}/peers`)).peers;
  }

  async requests(filter: RequestFilter = {}): Promise<LoggedRequest[]> {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(filter)) if (v !== undefined) q.set(k, String(v));
    const qs = q.toString();
    return (await this.call<{ requests: LoggedRequest[] }>("GET", `/control/v1/requests${qs === "" ? "" : `?${qs}`}`)).requests;
  }

  async clearRequests(): Promise<void> {
    await this.call("DELETE", "/control/v1/requests");
  }

  pushEvent(nodeId: string, ev: { event_type: string; payload?: Record<string, unknown>; event_id?: string }): Promise<{ event_id: string; event_type: string; delivered: number }> {
    return this.call("POST", `/control/v1/nodes/${enc(nodeId)}/events`, ev);
  }

  pushBadEvent(nodeId: string, opts: BadEventOptions): Promise<BadEventResult> {
    return this.call("POST", `/control/v1/nodes/${enc(nodeId)}/bad-events`, opts);
  }

  async events(nodeId: string): Promise<{ event_id: string; event_type: string; payload: Record<string, unknown>; issued_at: string }[]> {
    return (await this.call<{ events: { event_id: string; event_type: string; payload: Record<string, unknown>; issued_at: string }[] }>("GET", `/control/v1/nodes/${enc(nodeId)}/events`)).events;
  }

  /** Frames written to the node's streams so far (the newest 5000), oldest first. */
  async capturedFrames(nodeId: string): Promise<CapturedFrameInfo[]> {
    return (await this.call<{ frames: CapturedFrameInfo[] }>("GET", `/control/v1/nodes/${enc(nodeId)}/captured-frames`)).frames;
  }

  /** Writes captured frames again verbatim to the node's open streams (all, or those `seqs` name, in that order). */
  replayCapturedFrames(nodeId: string, seqs?: number[]): Promise<{ frames: number; streams: number }> {
    return this.call("POST", `/control/v1/nodes/${enc(nodeId)}/captured-frames/replay`, seqs === undefined ? {} : { seqs });
  }

  async dropStreams(nodeId: string, mode: "end" | "destroy" = "end"): Promise<number> {
    return (await this.call<{ dropped: number }>("POST", `/control/v1/nodes/${enc(nodeId)}/drop-streams`, { mode })).dropped;
  }

  async setFlags(nodeId: string, flags: { reconcile?: boolean; rotate_keys?: boolean }): Promise<{ reconcile: boolean; rotate_keys: boolean }> {
    return (await this.call<{ flags: { reconcile: boolean; rotate_keys: boolean } }>("POST", `/control/v1/nodes/${enc(nodeId)}/flags`, flags)).flags;
  }

  async heartbeats(nodeId: string): Promise<Received[]> {
    return (await this.call<{ heartbeats: Received[] }>("GET", `/control/v1/nodes/${enc(nodeId)}/heartbeats`)).heartbeats;
  }

  async drift(nodeId: string): Promise<Received[]> {
    return (await this.call<{ drift: Received[] }>("GET", `/control/v1/nodes/${enc(nodeId)}/drift`)).drift;
  }

  capabilities(nodeId: string): Promise<{ capabilities: unknown; updated_at: string }> {
    return this.call("GET", `/control/v1/nodes/${enc(nodeId)}/capabilities`);
  }

  /** Sets (value) or removes (undefined) one bridge block of the node's state, e.g. `bridge_config`. */
  setBridgeBlock(nodeId: string, block: string, value: Record<string, unknown> | undefined): Promise<{ blocks: Record<string, unknown> }> {
    return value === undefined ? this.call("DELETE", `/control/v1/nodes/${enc(nodeId)}/bridge/${enc(block)}`) : this.call("PUT", `/control/v1/nodes/${enc(nodeId)}/bridge/${enc(block)}`, value);
  }

  setPolicies(nodeId: string, policies: Policy[], opts: { push?: boolean } = {}): Promise<{ policies: Policy[]; event_id: string | null }> {
    return this.call("PUT", `/control/v1/nodes/${enc(nodeId)}/policies`, { policies, ...opts });
  }

  setNodeState(
    nodeId: string,
    st: { metadata?: Record<string, string>; data?: { key: string; content_type?: string; payload: unknown; version?: number }[]; push?: boolean },
  ): Promise<{ metadata: Record<string, string>; data: DataEntry[]; event_id: string | null }> {
    return this.call("PUT", `/control/v1/nodes/${enc(nodeId)}/node-state`, st);
  }

  signingKeys(): Promise<SigningKeysView & { active: string }> {
    return this.call("GET", "/control/v1/signing-keys");
  }

  rotateSigningKey(opts: { transition_period?: string; valid_from?: string; seed?: string; force?: boolean } = {}): Promise<SigningKeyRotation> {
    return this.call("POST", "/control/v1/signing-key/rotate", opts);
  }

  async setOffline(): Promise<void> {
    await this.call("POST", "/control/v1/offline");
  }

  async setOnline(): Promise<void> {
    await this.call("POST", "/control/v1/online");
  }
}

const enc = encodeURIComponent;
