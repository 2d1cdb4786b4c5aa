import type { Policy, Received } from "../state/store.js";
import type {
  ActionPushed,
  ActionRequestInput,
  ArtifactInfo,
  ExecutionRecord,
  FailureMode,
  FailureModeInput,
  ObsKind,
  ObsView,
  PeerOverride,
  ReportEntry,
  SecretChange,
  SecretRecord,
  StateDocument,
  TunnelRecord,
} from "./featuretypes.js";
import type { RelaySession as RelaySessionRecord } from "../state/relay.js";
import { MockcpTransport } from "./transport.js";

export type { RelaySessionRecord };

const enc = encodeURIComponent;
const node = (id: string): string => `/control/v1/nodes/${enc(id)}`;

/** Typed control-API methods for secrets, reports, executions, observability, artifacts, tunnels, integrity, policies and drift injection (docs/mockcp.md). */
export class MockcpFeatureClient extends MockcpTransport {
  // ---- secrets ----

  /** Sets a secret for a node; pushes node_secrets_updated unless `push: false`. */
  setSecret(nodeId: string, key: string, s: { value?: string; version?: number; denied?: boolean; listed?: boolean; push?: boolean }): Promise<SecretChange & { secret: SecretRecord }> {
    return this.call("PUT", `${node(nodeId)}/secrets/${enc(key)}`, s);
  }

  /** Makes reads of `key` answer 403 (keeps any value; not listed in secret_refs unless `listed`). */
  denySecret(nodeId: string, key: string, opts: { listed?: boolean; push?: boolean } = {}): Promise<SecretChange & { secret: SecretRecord }> {
    return this.setSecret(nodeId, key, { denied: true, ...opts });
  }

  deleteSecret(nodeId: string, key: string, opts: { push?: boolean } = {}): Promise<SecretChange & { deleted: boolean }> {
    return this.call("DELETE", `${node(nodeId)}/secrets/${enc(key)}${opts.push === false ? "?push=false" : ""}`);
  }

  secrets(nodeId: string): Promise<{ secrets: SecretRecord[]; secret_refs: { key: string; version: number }[] }> {
    return this.call("GET", `${node(nodeId)}/secrets`);
  }

  // ---- reports ----

  async reports(nodeId: string): Promise<ReportEntry[]> {
    return (await this.call<{ reports: ReportEntry[] }>("GET", `${node(nodeId)}/reports`)).reports;
  }

  /** Overwrites what mockcp holds for a report key (e.g. a higher version to provoke 409). */
  async seedReport(nodeId: string, key: string, e: { version: number; payload: unknown; content_type?: string; updated_at?: string }): Promise<ReportEntry> {
    return (await this.call<{ report: ReportEntry }>("PUT", `${node(nodeId)}/reports/${enc(key)}`, e)).report;
  }

  async clearReports(nodeId: string): Promise<void> {
    await this.call("DELETE", `${node(nodeId)}/reports`);
  }

  // ---- executions ----

  /** Pushes an action_request (execution id generated unless given); the execution becomes known. */
  pushAction(nodeId: string, a: ActionRequestInput): Promise<ActionPushed> {
    return this.call("POST", `${node(nodeId)}/actions`, a);
  }

  async executions(nodeId: string): Promise<ExecutionRecord[]> {
    return (await this.call<{ executions: ExecutionRecord[] }>("GET", `${node(nodeId)}/executions`)).executions;
  }

  execution(nodeId: string, executionId: string): Promise<ExecutionRecord> {
    return this.call("GET", `${node(nodeId)}/executions/${enc(executionId)}`);
  }

  /** Polls until the execution has a result. */
  waitForResult(nodeId: string, executionId: string, opts: { timeoutMs?: number } = {}): Promise<ExecutionRecord> {
    return this.waitFor(
      async () => {
        const r = await this.request<ExecutionRecord>("GET", `${node(nodeId)}/executions/${enc(executionId)}`);
        return r.status === 200 && r.body.result !== null ? r.body : undefined;
      },
      { ...opts, what: `result of ${executionId}` },
    );
  }

  // ---- observability ----

  observability(nodeId: string, kind: ObsKind): Promise<ObsView> {
    return this.call("GET", `${node(nodeId)}/${kind}`);
  }

  async clearObservability(nodeId: string, kind: ObsKind): Promise<void> {
    await this.call("DELETE", `${node(nodeId)}/${kind}`);
  }

  async setObservabilityFailure(f: FailureModeInput): Promise<FailureMode & { remaining: number | null }> {
    return (await this.call<{ failure: FailureMode & { remaining: number | null } }>("PUT", "/control/v1/observability/failure", f)).failure;
  }

  async clearObservabilityFailure(): Promise<void> {
    await this.call("DELETE", "/control/v1/observability/failure");
  }

  // ---- artifacts ----

  async uploadArtifact(version: string, os: string, arch: string, bytes: Buffer): Promise<ArtifactInfo> {
    const r = await this.request<ArtifactInfo>("PUT", `/control/v1/artifacts/plexd/${enc(version)}/${enc(os)}/${enc(arch)}`, {
      rawBody: bytes,
      headers: { "content-type": "application/octet-stream" },
    });
    return this.check(r, "PUT", "artifacts");
  }

  async artifacts(): Promise<ArtifactInfo[]> {
    return (await this.call<{ artifacts: ArtifactInfo[] }>("GET", "/control/v1/artifacts")).artifacts;
  }

  async deleteArtifact(version: string, os: string, arch: string): Promise<void> {
    await this.call("DELETE", `/control/v1/artifacts/plexd/${enc(version)}/${enc(os)}/${enc(arch)}`);
  }

  // ---- session tokens ----

  /** A session JWT for local action runs (PLEXD_SESSION_TOKEN), signed by the active (or the retired) key. */
  mintSessionToken(o: { node_id: string; actions: string[]; session_id?: string; sub?: string; email?: string; ttl_seconds?: number; iat?: number; iss?: string; key?: "current" | "previous" }): Promise<{ token: string; claims: { session_id: string; iat: number; exp: number } & Record<string, unknown> }> {
    return this.call("POST", "/control/v1/session-tokens", o);
  }

  /** Pushes session_revoked for `sessionId` to a node. */
  revokeSession(nodeId: string, sessionId: string, revokedAt = new Date().toISOString()): Promise<{ event_id: string }> {
    return this.call("POST", `${node(nodeId)}/events`, { event_type: "session_revoked", payload: { session_id: sessionId, revoked_at: revokedAt } });
  }

  // ---- tunnels, integrity ----

  async tunnels(nodeId: string): Promise<TunnelRecord[]> {
    return (await this.call<{ tunnels: TunnelRecord[] }>("GET", `${node(nodeId)}/tunnels`)).tunnels;
  }

  async integrityViolations(nodeId: string): Promise<Received[]> {
    return (await this.call<{ violations: Received[] }>("GET", `${node(nodeId)}/integrity-violations`)).violations;
  }

  // ---- desired state, policies, drift injection ----

  /** The state document (GET /v1/nodes/{id}/state) exactly as the node would get it (overrides applied). */
  desiredState(nodeId: string): Promise<StateDocument> {
    return this.call("GET", `${node(nodeId)}/state`);
  }

  async policies(nodeId: string): Promise<Policy[]> {
    return (await this.call<{ policies: Policy[] }>("GET", `${node(nodeId)}/policies`)).policies;
  }

  /** Changes (or with `remove: true` hides, or adds) a peer in the node's state document without pushing an event. */
  injectPeerDrift(nodeId: string, peerId: string, o: PeerOverride): Promise<{ overrides: Record<string, PeerOverride>; peers: StateDocument["peers"] }> {
    return this.call("PUT", `${node(nodeId)}/state-overrides/peers/${enc(peerId)}`, o);
  }

  async stateOverrides(nodeId: string): Promise<Record<string, PeerOverride>> {
    return (await this.call<{ overrides: Record<string, PeerOverride> }>("GET", `${node(nodeId)}/state-overrides`)).overrides;
  }

  async clearStateOverrides(nodeId: string, peerId?: string): Promise<void> {
    await this.call("DELETE", `${node(nodeId)}/state-overrides${peerId === undefined ? "" : `/peers/${enc(peerId)}`}`);
  }
  // ---- bridge ingress ----

  /**
   * Assigns (or replaces) an ingress rule on a bridge; pushes ingress_rule_assigned unless `push: false`.
   * `issue_cert` has mockcp issue the certificate for those names; `ca_pem` is the CA that signed it.
   */
  setIngressRule(nodeId: string, ruleId: string, rule: IngressRuleInput): Promise<{ rules: Record<string, unknown>[]; ca_pem: string; event_id: string | null }> {
    return this.call("PUT", `${node(nodeId)}/ingress-rules/${enc(ruleId)}`, rule);
  }

  removeIngressRule(nodeId: string, ruleId: string, opts: { push?: boolean } = {}): Promise<{ rules: Record<string, unknown>[]; event_id: string | null }> {
    return this.call("DELETE", `${node(nodeId)}/ingress-rules/${enc(ruleId)}${opts.push === false ? "?push=false" : ""}`);
  }

  // ---- bridge user access ----

  /** Assigns (or replaces) a user-access client on a bridge; pushes user_access_peer_assigned unless `push: false`. */
  setUserAccessPeer(nodeId: string, publicKey: string, peer: { allowed_ips: string[]; label?: string; psk?: string; push?: boolean }): Promise<{ user_access_config: Record<string, unknown>; event_id: string | null }> {
    return this.call("PUT", `${node(nodeId)}/user-access/peers/${enc(publicKey)}`, peer);
  }

  /** Revokes a user-access client; pushes user_access_peer_revoked unless `push: false`. */
  removeUserAccessPeer(nodeId: string, publicKey: string, opts: { push?: boolean } = {}): Promise<{ user_access_config: Record<string, unknown>; event_id: string | null }> {
    return this.call("DELETE", `${node(nodeId)}/user-access/peers/${enc(publicKey)}${opts.push === false ? "?push=false" : ""}`);
  }

  // ---- relay sessions ----

  /** Names a node as relay bridge; `address` (`ip:port`) is what the relayed nodes send to. */
  setRelayBridge(nodeId: string, address?: string): Promise<{ bridge: { node_id: string; address?: string }; assigned: RelaySessionRecord[] }> {
    return this.call("PUT", `/control/v1/relay/bridges/${enc(nodeId)}`, address === undefined ? {} : { address });
  }

  relay(): Promise<{ auto: boolean; ttl_seconds: number; no_handshake_grace_seconds: number; sessions: RelaySessionRecord[] }> {
    return this.call("GET", "/control/v1/relay");
  }

  setRelaySettings(s: { auto?: boolean; ttl_seconds?: number; no_handshake_grace_seconds?: number }): Promise<{ auto: boolean; ttl_seconds: number; no_handshake_grace_seconds: number; assigned: RelaySessionRecord[] }> {
    return this.call("PUT", "/control/v1/relay", s);
  }

  assignRelay(s: { peer_a: string; peer_b: string; bridge?: string; ttl_seconds?: number; relay_port?: number; session_id?: string }): Promise<RelaySessionRecord> {
    return this.call("POST", "/control/v1/relay/sessions", s);
  }

  revokeRelay(sessionId: string): Promise<RelaySessionRecord> {
    return this.call("DELETE", `/control/v1/relay/sessions/${enc(sessionId)}`);
  }

  // ---- bridge site-to-site tunnels ----

  /** Assigns (or replaces) one tunnel in the bridge's site_to_site_config; pushes site_to_site_tunnel_assigned unless `push: false`. */
  setSiteToSiteTunnel(nodeId: string, tunnelId: string, tunnel: Record<string, unknown> & { push?: boolean }): Promise<{ tunnels: Record<string, unknown>[]; event_id: string | null }> {
    return this.call("PUT", `${node(nodeId)}/site-to-site-tunnels/${enc(tunnelId)}`, tunnel);
  }

  removeSiteToSiteTunnel(nodeId: string, tunnelId: string, opts: { push?: boolean } = {}): Promise<{ tunnels: Record<string, unknown>[]; event_id: string | null }> {
    return this.call("DELETE", `${node(nodeId)}/site-to-site-tunnels/${enc(tunnelId)}${opts.push === false ? "?push=false" : ""}`);
  }
}

/** An ingress rule as a test hands it to mockcp (fields pass through unchecked, so bad rules can be sent). */
export interface IngressRuleInput {
  listen_port?: number;
  target_addr?: string;
  mode?: string;
  sni?: string;
  cert_pem?: string;
  key_pem?: string;
  issue_cert?: string[];
  push?: boolean;
  [extra: string]: unknown;
}

