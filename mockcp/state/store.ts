import { randomBytes } from "node:crypto";
import { z } from "zod";
import { isKey32 } from "../../proto/lib/keys.js";
import { ApiError, badRequest } from "./apierror.js";
import { bridgeRoutes } from "./bridge-routes.js";
import { BridgeBlocks, type BridgeBlockName } from "./bridge-blocks.js";
import { EventLog, type LoggedEvent } from "./eventlog.js";
import { KeyRing, type SigningKeysView } from "./keyring.js";
import { MeshIpPool } from "./meship.js";
import { RequestLog } from "./requestlog.js";
import { SigningKey } from "./signer.js";
import { ArtifactStore } from "./artifacts.js";
import { CallbackStore } from "./callbacks.js";
import { ExecutionStore } from "./executions.js";
import { offlineAfter, resumeNode, unreachableAfter } from "./liveness.js";
import { ObservabilityStore } from "./observability.js";
import { StateOverrides } from "./overrides.js";
import { ReportStore } from "./reports.js";
import { autoRelay, relayConfigOf, relayedEndpoint, RelayStore, revokeRelay } from "./relay.js";
import { SecretStore, type SecretRef } from "./secrets.js";
import { ipEndpoint, parseBody, timestamp } from "./validate.js";
import { IngressStore } from "./ingress.js";

export type Clock = () => number;

/** Peer object of the control-plane API. */
export interface Peer {
  id: string;
  public_key: string;
  mesh_ip: string;
  endpoint: string;
  allowed_ips: string[];
  psk: string;
  /** The peer's registered hostname: an optional field beyond the API's Peer object (receivers ignore unknown fields), so `plexd peers` and `plexd top` can name peers. */
  hostname?: string;
}

export interface Policy {
  id: string;
  rules: unknown[];
}

export interface DataEntry {
  key: string;
  content_type: string;
  payload: unknown;
  version: number;
  updated_at: string;
}

export interface Received<T = unknown> {
  received_at: string;
  body: T;
}

export type NodeStatus = "active" | "deregistered";

export interface NodeRecord {
  id: string;
  hostname: string;
  publicKey: string;
  meshIp: string;
  identityToken: string;
  nsk: string;
  reportedMetadata: Record<string, string>;
  capabilities: unknown;
  capabilitiesUpdatedAt: number;
  registeredAt: number;
  status: NodeStatus;
  deregisteredAt: number | undefined;
  endpoint: { public_endpoint: string; nat_type: string; updated_at: string; relay_fallback?: boolean } | undefined;
  heartbeats: Received[];
  lastHeartbeatAt: number | undefined;
  /** Set while the node counts as offline: its peers were told `peer_removed`. */
  offlineSince: number | undefined;
  flags: { reconcile: boolean; rotate_keys: boolean };
  drift: Received[];
  lastRotation: { newPublicKey: string; response: KeysRotateResponse } | undefined;
  policies: Policy[];
  metadata: Record<string, string>;
  data: DataEntry[];
  events: EventLog;
}

export interface KeysRotateResponse {
  updated_peers: Peer[];
  node_secret_key?: string;
}

export interface RegisterResponse {
  node_id: string;
  mesh_ip: string;
  identity_token: string;
  signing_public_key: string;
  node_secret_key: string;
  peers: Peer[];
}

interface BootstrapToken {
  expiresAt: number;
  usesLeft: number;
}

export interface MockStateOptions {
  now?: Clock;
  signingKey?: SigningKey;
  /** Node keys/rotate hands out a fresh NSK (optional for a control plane); default true, as TV-12 expects. */
  rotateNskOnKeyRotate?: boolean;
  /** Heartbeat interval assumed for the unreachable/offline status. */
  heartbeatIntervalMs?: number;
  eventLog?: { minEvents?: number; minAgeMs?: number };
}

export type EventSink = (nodeId: string, event: LoggedEvent) => void;

const printable = /^[\x20-\x7e]{1,512}$/;


const registerBody = z.object({
  token: z.string(),
  public_key: z.string(),
  hostname: z.string(),
  metadata: z.record(z.string(), z.string()).nullish(),
  capabilities: z.record(z.string(), z.unknown()).nullish(),
});

const heartbeatBody = z.object({
  node_id: z.string(),
  timestamp: timestamp(),
  status: z.enum(["healthy", "degraded"]),
  uptime: z.string().nullish(),
  binary_checksum: z.string().nullish(),
  mesh: z.record(z.string(), z.unknown()).nullish(),
  nat: z.record(z.string(), z.unknown()).nullish(),
});

const rotateBody = z.object({ node_id: z.string(), new_public_key: z.string() });

const endpointBody = z.object({
  public_endpoint: ipEndpoint(),
  nat_type: z.enum(["full_cone", "symmetric", "none", "unknown"]),
  relay_fallback: z.boolean().optional(),
});

const driftBody = z.object({
  timestamp: timestamp(),
  corrections: z.array(z.object({ type: z.string(), detail: z.string() })),
});

const capabilitiesBody = z.object({
  binary: z.object({ version: z.string(), checksum: z.string() }).nullish(),
  builtin_actions: z.array(z.unknown()),
  hooks: z.array(z.unknown()),
});

export { parseBody };

const b64 = (n: number): string => randomBytes(n).toString("base64");
const iso = (ms: number): string => new Date(ms).toISOString();

/**
 * All of mockcp's control-plane state, in memory. Methods implement the endpoints of
 * the control-plane API (docs/mockcp.md) and throw ApiError for non-2xx answers; HTTP plumbing lives in server/.
 */
export class MockState {
  readonly now: Clock;
  readonly keys: KeyRing;
  readonly requests = new RequestLog();
  readonly nodes = new Map<string, NodeRecord>();
  offline = false;
  readonly heartbeatIntervalMs: number;
  // Feature endpoints (secrets … integrity) and drift injection, each in its own module.
  readonly secrets: SecretStore;
  readonly reports = new ReportStore();
  readonly executions: ExecutionStore;
  readonly observability: ObservabilityStore;
  readonly artifacts: ArtifactStore;
  readonly callbacks: CallbackStore;
  readonly overrides = new StateOverrides();
  readonly ingress = new IngressStore();
  readonly relay = new RelayStore();
  readonly bridgeBlocks = new BridgeBlocks();

  readonly #tokens = new Map<string, BootstrapToken>();
  readonly #byIdentity = new Map<string, string>();
  readonly #psks = new Map<string, string>();
  readonly #ips = new MeshIpPool();
  readonly #sinks = new Set<EventSink>();
  readonly #rotateNsk: boolean;
  readonly #eventLogOpts: { minEvents?: number; minAgeMs?: number };
  // Event ids carry a per-instance prefix so a restarted mockcp never reuses an id an
  // agent still remembers as processed (it would drop the new event as a duplicate).
  readonly #eventPrefix = `evt_${randomBytes(3).toString("hex")}_`;
  #eventSeq = 0;

  constructor(opts: MockStateOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.keys = new KeyRing(opts.signingKey ?? SigningKey.generate());
    this.#rotateNsk = opts.rotateNskOnKeyRotate ?? true;
    this.heartbeatIntervalMs = opts.heartbeatIntervalMs ?? 30_000;
    this.#eventLogOpts = opts.eventLog ?? {};
    this.secrets = new SecretStore(this.now);
    this.executions = new ExecutionStore(this.now);
    this.observability = new ObservabilityStore(this.now);
    this.artifacts = new ArtifactStore(this.now);
    this.callbacks = new CallbackStore(this.now);
    this.onEvent((nodeId, ev) => this.executions.observe(nodeId, ev));
  }

  // ---- bootstrap tokens -------------------------------------------------------------

  createToken(opts: { token?: string | undefined; ttlSeconds?: number | undefined; uses?: number | undefined } = {}): {
    token: string;
    expires_at: string;
    uses: number;
  } {
    const token = opts.token ?? `bt_${randomBytes(18).toString("base64url")}`;
    if (!printable.test(token)) throw badRequest("token must be 1..512 printable ASCII characters");
    const ttl = opts.ttlSeconds ?? 600;
    const uses = opts.uses ?? 1;
    if (!Number.isFinite(ttl)) throw badRequest("ttl_seconds must be a number");
    if (!Number.isInteger(uses) || uses < 1) throw badRequest("uses must be an integer >= 1");
    const expiresAt = this.now() + ttl * 1000;
    this.#tokens.set(token, { expiresAt, usesLeft: uses });
    return { token, expires_at: iso(expiresAt), uses };
  }

  listTokens(): { token: string; expires_at: string; uses_left: number; expired: boolean }[] {
    const now = this.now();
    return [...this.#tokens].map(([token, t]) => ({ token, expires_at: iso(t.expiresAt), uses_left: t.usesLeft, expired: t.expiresAt <= now }));
  }

  // ---- registration -------------------------------------------------------------------

  register(raw: unknown): RegisterResponse {
    const body = parseBody(registerBody, raw);
    if (!printable.test(body.token)) throw badRequest("token: must be 1..512 printable ASCII characters");
    if (!isKey32(body.public_key)) throw badRequest("public_key: must be base64 of exactly 32 bytes");
    if (body.hostname.length === 0 || body.hostname.length > 255) throw badRequest("hostname: must be 1..255 characters");
    const now = this.now();
    const tok = this.#tokens.get(body.token);
    if (tok === undefined || tok.usesLeft < 1 || tok.expiresAt <= now) {
      throw new ApiError(401, "invalid_token", "bootstrap token is unknown, expired or already used");
    }
    for (const n of this.activeNodes()) {
      if (n.hostname === body.hostname) throw new ApiError(409, "hostname_conflict", `hostname ${body.hostname} is already registered`);
    }
    tok.usesLeft -= 1;

    let id: string;
    do id = `n_${randomBytes(6).toString("hex")}`;
    while (this.nodes.has(id));
    const node: NodeRecord = {
      id,
      hostname: body.hostname,
      publicKey: body.public_key,
      meshIp: this.#ips.allocate(now),
      identityToken: randomBytes(32).toString("base64url"),
      nsk: b64(32),
      reportedMetadata: body.metadata ?? {},
      capabilities: body.capabilities ?? null,
      capabilitiesUpdatedAt: now,
      registeredAt: now,
      status: "active",
      deregisteredAt: undefined,
      endpoint: undefined,
      heartbeats: [],
      lastHeartbeatAt: undefined,
      offlineSince: undefined,
      flags: { reconcile: false, rotate_keys: false },
      drift: [],
      lastRotation: undefined,
      policies: [],
      metadata: {},
      data: [],
      events: new EventLog(this.#eventLogOpts),
    };
    this.nodes.set(id, node);
    this.#byIdentity.set(node.identityToken, id);
    for (const other of this.activeNodes()) {
      if (other.id !== id) this.publish(other.id, "peer_added", { ...this.peerView(other.id, node) });
    }
    return {
      node_id: id,
      mesh_ip: node.meshIp,
      identity_token: node.identityToken,
      // The key that signs right now: during a rotation before valid_from that is still
      // the old key; the first state fetch then hands over the full set.
      signing_public_key: this.keys.signer(now).publicKey,
      node_secret_key: node.nsk,
      peers: this.peersOf(id),
    };
  }

  // ---- auth (order: 404 unknown node, then 401 wrong token) -------------------------

  /** The node of a node-scoped path, after the 404-then-401 checks. */
  authNode(nodeId: string, authorization: string | undefined): NodeRecord {
    const node = this.nodes.get(nodeId);
    if (node === undefined) throw new ApiError(404, "node_not_found", `unknown node ${nodeId}`);
    const token = bearer(authorization);
    if (token === undefined || node.status !== "active" || token !== node.identityToken) {
      throw new ApiError(401, "unauthorized", "bearer token missing, unknown or revoked");
    }
    return node;
  }

  /** The caller's node from its bearer token alone (paths without a node id). */
  authCaller(authorization: string | undefined): NodeRecord {
    const token = bearer(authorization);
    const id = token === undefined ? undefined : this.#byIdentity.get(token);
    const node = id === undefined ? undefined : this.nodes.get(id);
    if (node === undefined || node.status !== "active") throw new ApiError(401, "unauthorized", "bearer token missing, unknown or revoked");
    return node;
  }

  nodeOr404(nodeId: string): NodeRecord {
    const node = this.nodes.get(nodeId);
    if (node === undefined) throw new ApiError(404, "node_not_found", `unknown node ${nodeId}`);
    return node;
  }

  /** Looks up the node id a bearer token belongs to, for the request log. */
  nodeIdOfToken(authorization: string | undefined): string | null {
    const token = bearer(authorization);
    return (token === undefined ? undefined : this.#byIdentity.get(token)) ?? null;
  }

  // ---- heartbeat / deregister ---------------------------------------------------------

  heartbeat(node: NodeRecord, raw: unknown): { reconcile: boolean; rotate_keys: boolean } {
    const body = parseBody(heartbeatBody, raw);
    if (body.node_id !== node.id) throw badRequest(`node_id ${body.node_id} does not match the path (${node.id})`);
    const now = this.now();
    node.heartbeats.push({ received_at: iso(now), body: raw });
    if (node.heartbeats.length > 1000) node.heartbeats.shift();
    node.lastHeartbeatAt = now;
    resumeNode(this, node);
    const flags = { ...node.flags };
    // reconcile is a one-shot request; rotate_keys stays set until keys/rotate arrives.
    node.flags.reconcile = false;
    return flags;
  }

  deregister(node: NodeRecord): void {
    const now = this.now();
    node.status = "deregistered";
    node.deregisteredAt = now;
    this.#byIdentity.delete(node.identityToken);
    this.#ips.release(node.meshIp, now);
    for (const s of [...this.relay.sessions.values()]) if ([s.peer_a_id, s.peer_b_id, s.bridge_id].includes(node.id)) revokeRelay(this, s.session_id);
    for (const other of this.activeNodes()) {
      this.#psks.delete(pairKey(node.id, other.id));
      this.publish(other.id, "peer_removed", { peer_id: node.id });
    }
  }

  // ---- keys/rotate -----------------------------------------------------------

  rotateKeys(caller: NodeRecord, raw: unknown): KeysRotateResponse {
    const body = parseBody(rotateBody, raw);
    if (body.node_id !== caller.id) throw new ApiError(403, "forbidden", "node_id is not the caller's node");
    if (!isKey32(body.new_public_key)) throw badRequest("new_public_key: must be base64 of exactly 32 bytes");
    caller.flags.rotate_keys = false;
    if (caller.lastRotation?.newPublicKey === body.new_public_key) return caller.lastRotation.response;
    caller.publicKey = body.new_public_key;
    for (const other of this.activeNodes()) {
      if (other.id === caller.id) continue;
      this.#psks.set(pairKey(caller.id, other.id), b64(32));
      this.publish(other.id, "peer_key_rotated", { ...this.peerView(other.id, caller) });
    }
    const response: KeysRotateResponse = { updated_peers: this.peersOf(caller.id) };
    if (this.#rotateNsk) {
      caller.nsk = b64(32);
      response.node_secret_key = caller.nsk;
    }
    caller.lastRotation = { newPublicKey: body.new_public_key, response };
    return response;
  }

  // ---- endpoint / capabilities / drift / state ----------------------------------------------

  putEndpoint(node: NodeRecord, raw: unknown): { peer_endpoints: { peer_id: string; endpoint: string }[] } {
    const body = parseBody(endpointBody, raw);
    const changed = node.endpoint?.public_endpoint !== body.public_endpoint;
    node.endpoint = { public_endpoint: body.public_endpoint, nat_type: body.nat_type, updated_at: iso(this.now()), ...(body.relay_fallback !== undefined ? { relay_fallback: body.relay_fallback } : {}) };
    const others = this.activeNodes().filter((n) => n.id !== node.id);
    // A pair relayed through a bridge keeps the relay's address (docs/mockcp.md#relay-sessions).
    if (changed) for (const other of others) if (relayedEndpoint(this, other.id, node.id) === undefined) this.publish(other.id, "peer_endpoint_changed", { peer_id: node.id, endpoint: body.public_endpoint });
    autoRelay(this);
    return {
      peer_endpoints: others.flatMap((o) => (o.endpoint === undefined ? [] : [{ peer_id: o.id, endpoint: relayedEndpoint(this, node.id, o.id) ?? o.endpoint.public_endpoint }])),
    };
  }

  putCapabilities(node: NodeRecord, raw: unknown): void {
    parseBody(capabilitiesBody, raw);
    const routesBefore = bridgeRoutes(node.capabilities).join(",");
    node.capabilities = raw;
    node.capabilitiesUpdatedAt = this.now();
    // A bridge that now offers a relay may pair symmetric nodes that were waiting for one.
    autoRelay(this);
    // A bridge's announced access subnets changed: the other nodes get its peer entry again.
    if (bridgeRoutes(raw).join(",") !== routesBefore) {
      for (const other of this.activeNodes()) if (other.id !== node.id) this.publish(other.id, "peer_added", { ...this.peerView(other.id, node) });
    }
  }

  postDrift(node: NodeRecord, raw: unknown): void {
    parseBody(driftBody, raw);
    node.drift.push({ received_at: iso(this.now()), body: raw });
    if (node.drift.length > 1000) node.drift.shift();
  }

  state(node: NodeRecord): {
    peers: Peer[];
    policies: Policy[];
    signing_keys: SigningKeysView;
    metadata: Record<string, string>;
    data: DataEntry[];
    secret_refs: SecretRef[];
  } & Partial<Record<BridgeBlockName, Record<string, unknown>>> {
    const relay = relayConfigOf(this, node.id);
    return {
      ...(relay ? { relay_config: relay } : {}),
      peers: this.desiredPeers(node.id),
      policies: node.policies,
      signing_keys: this.keys.view(this.now()),
      metadata: node.metadata,
      data: node.data,
      secret_refs: this.secrets.refs(node.id),
      ...this.ingress.block(node.id),
      ...this.bridgeBlocks.of(node.id),
    };
  }

  // ---- mesh views -----------------------------------------------------------------------

  activeNodes(): NodeRecord[] {
    return [...this.nodes.values()].filter((n) => n.status === "active");
  }

  /** Active nodes that are not offline: the ones that appear as peers. */
  meshNodes(): NodeRecord[] {
    return this.activeNodes().filter((n) => n.offlineSince === undefined);
  }

  /** Every other mesh node as a Peer, as `viewerId` sees it. */
  peersOf(viewerId: string): Peer[] {
    const out: Peer[] = [];
    for (const n of this.meshNodes()) if (n.id !== viewerId) out.push(this.peerView(viewerId, n));
    return out;
  }

  /** The peers of `viewerId`'s state document: peersOf() with injected drift applied. */
  desiredPeers(viewerId: string): Peer[] {
    return this.overrides.apply(viewerId, this.peersOf(viewerId));
  }

  peerView(viewerId: string, peer: NodeRecord): Peer {
    return {
      id: peer.id,
      public_key: peer.publicKey,
      mesh_ip: peer.meshIp,
      endpoint: relayedEndpoint(this, viewerId, peer.id) ?? peer.endpoint?.public_endpoint ?? "",
      allowed_ips: [`${peer.meshIp}/32`, ...bridgeRoutes(peer.capabilities)],
      psk: this.psk(viewerId, peer.id),
      hostname: peer.hostname,
    };
  }

  /** The PSK of an unordered pair, created on first use; both members see the same value. */
  psk(a: string, b: string): string {
    const k = pairKey(a, b);
    let v = this.#psks.get(k);
    if (v === undefined) {
      v = b64(32);
      this.#psks.set(k, v);
    }
    return v;
  }

  /** Computed liveness for the control API; thresholds (3 and 10 missed intervals). */
  statusOf(node: NodeRecord): string {
    if (node.status === "deregistered") return "deregistered";
    if (node.offlineSince !== undefined) return "offline";
    if (node.lastHeartbeatAt === undefined) return "registered";
    const missed = (this.now() - node.lastHeartbeatAt) / this.heartbeatIntervalMs;
    if (missed >= offlineAfter) return "offline";
    if (missed >= unreachableAfter) return "unreachable";
    return "healthy";
  }

  // ---- events -------------------------------------------------------------------------------

  onEvent(sink: EventSink): () => void {
    this.#sinks.add(sink);
    return () => this.#sinks.delete(sink);
  }

  newEventId(): string {
    return `${this.#eventPrefix}${String(++this.#eventSeq).padStart(6, "0")}`;
  }

  /** Records an event in the node's replay buffer and hands it to every open stream. */
  publish(nodeId: string, eventType: string, payload: Record<string, unknown>, eventId?: string, signWith?: SigningKey): LoggedEvent {
    const node = this.nodeOr404(nodeId);
    const id = eventId ?? this.newEventId();
    if (id.length < 1 || id.length > 128) throw badRequest("event_id must be 1..128 characters");
    if (node.events.has(id)) throw new ApiError(409, "duplicate_event_id", `event id ${id} was already used for ${nodeId}`);
    const event: LoggedEvent = { event_id: id, event_type: eventType, payload, issuedAt: this.now() };
    if (signWith !== undefined) event.signWith = signWith;
    node.events.append(event, event.issuedAt);
    for (const sink of this.#sinks) sink(nodeId, event);
    return event;
  }
}

function bearer(authorization: string | undefined): string | undefined {
  const m = /^Bearer (.+)$/.exec(authorization ?? "");
  return m?.[1];
}

function pairKey(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}
