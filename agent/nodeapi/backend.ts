import type { MessageInitShape } from "@bufbuild/protobuf";
import type {
  AuthorizedKeysResponseSchema,
  DeregisterResponseSchema,
  GetAuditStatusResponseSchema,
  GetLogStatusResponseSchema,
  TailLogsResponseSchema,
  GetBridgeStatusResponseSchema,
  GetUserAccessConfigResponseSchema,
  ListUserAccessPeersResponseSchema,
  ListActionsResponseSchema,
  ListExecutionsResponseSchema,
  ListHooksResponseSchema,
  ReloadConfigResponseSchema,
  ReloadHooksResponseSchema,
  SetLogLevelResponseSchema,
  VerifyHooksResponseSchema,
} from "../../proto/gen/plexd/node/v1/node_pb.js";
import type { PipelineCounters } from "../telemetry/delivery.js";

// What the node API needs from the running agent (AgentService, docs/node-api.md).
// The agent implements this with live data; tests use FakeBackend. Plain TypeScript shapes,
// times as epoch milliseconds: the server turns them into proto messages, so the agent
// never builds wire types for the node API. Node state (NodeStateService) is not here: it
// is the NodeState class in ./state/, passed to startNodeApi beside the backend.

export type Severity = "info" | "warning" | "critical";

export interface HealthInfo {
  code: string;
  severity: Severity;
  text: string;
  /** Epoch ms when the condition began. */
  since: number;
}

export interface LastRunInfo {
  /** Epoch ms. */
  at: number;
  ok: boolean;
  driftCount?: number;
}

export interface StatusSnapshot {
  version: string;
  /** node or bridge. */
  mode: string;
  /** Start-up phase or steady state (docs/architecture.md#lifecycle): starting, awaiting_token, registering, unregistered, connecting, connected, offline, stopping. */
  phase: string;
  nodeId: string;
  meshIp: string;
  /** Epoch ms when the agent started; the server turns it into `uptime`. */
  startedAt: number;
  /** sha256:<hex> of the running binary. */
  binaryChecksum: string;
  sse: { connected: boolean; since?: number; reconnects: number; lastEventId: string };
  lastHeartbeat?: LastRunInfo;
  lastReconcile?: LastRunInfo;
  nat: { publicEndpoint: string; type: string };
  peerCount: number;
  privhelperOk: boolean;
  health: HealthInfo[];
  /** Free-form counters (events_received, reconcile_cycles, ...). */
  counters: Record<string, number | bigint>;
  /** This node as the mesh sees it; absent before registration. */
  self?: { hostname: string; publicKey: string; interface: string; listenPort: number };
  /** The level the agent logs at now. */
  logLevel?: string;
  /** Telemetry delivery counters of the running pipelines (metrics, logs, audit). */
  pipelines?: { name: string; counters: PipelineCounters }[];
}

export interface PeerInfo {
  peerId: string;
  meshIp: string;
  publicKey: string;
  /** host:port currently used by the tunnel, "" when unknown. */
  endpoint: string;
  /** Whether policy makes this peer visible to the node (invisible peers only with `all`). */
  visible: boolean;
  /** Epoch ms of the last WireGuard handshake, undefined when never. */
  lastHandshake?: number;
  rxBytes: number | bigint;
  txBytes: number | bigint;
  /** Round-trip time when a probe measured one. */
  rttMs?: number;
  /** Loss of the latest latency probe, 0-100. */
  lossPercent?: number;
  relayed: boolean;
  /** The peer's hostname when the control plane sent one. */
  hostname?: string;
  /** Why admission keeps this peer out of the kernel; undefined when it is admitted. */
  quarantineReason?: string;
}

export interface PolicyInfo {
  id: string;
  rules: { src: string; dst: string; port: number; protocol: string; action: string }[];
}

export interface PoliciesInfo {
  policies: PolicyInfo[];
  invalidRules: { policyId: string; index: number; reason: string }[];
  /** Rendered firewall rules read back from the kernel, with hit counters. */
  firewallRules: { id: string; chain: string; text: string; packets: number | bigint; bytes: number | bigint }[];
  /** Default verdict, e.g. "deny". */
  default: string;
}

export type AgentEventKind = "peer_up" | "peer_down" | "handshake" | "policy_changed" | "health_changed" | "drift_corrected" | "event";

export interface AgentEvent {
  /** Epoch ms. */
  at: number;
  kind: AgentEventKind;
  /** What it is about: a peer id, policy id, health code, event id. */
  subject: string;
  detail: string;
}

export interface NodeApiBackend {
  status(): StatusSnapshot | Promise<StatusSnapshot>;
  /** Called whenever anything in the status may have changed; WatchStatus throttles to 2/s. */
  subscribeStatus(listener: () => void): () => void;
  listPeers(opts: { all: boolean }): PeerInfo[] | Promise<PeerInfo[]>;
  listPolicies(opts: { rules: boolean }): PoliciesInfo | Promise<PoliciesInfo>;
  /** The change feed behind AgentService.Watch. */
  subscribeEvents(listener: (event: AgentEvent) => void): () => void;

  // Features that arrive later. A missing method answers `unimplemented`.
  listActions?(): Promise<MessageInitShape<typeof ListActionsResponseSchema>>;
  listExecutions?(): Promise<MessageInitShape<typeof ListExecutionsResponseSchema>>;
  listHooks?(): Promise<MessageInitShape<typeof ListHooksResponseSchema>>;
  verifyHooks?(): Promise<MessageInitShape<typeof VerifyHooksResponseSchema>>;
  reloadHooks?(): Promise<MessageInitShape<typeof ReloadHooksResponseSchema>>;
  logStatus?(): Promise<MessageInitShape<typeof GetLogStatusResponseSchema>>;
  /** `recent`: also the last this-many events (0: none). */
  auditStatus?(recent: number): Promise<MessageInitShape<typeof GetAuditStatusResponseSchema>>;
  bridgeStatus?(): Promise<MessageInitShape<typeof GetBridgeStatusResponseSchema>>;
  reloadConfig?(): Promise<MessageInitShape<typeof ReloadConfigResponseSchema>>;
  deregister?(opts: { purge: boolean; force: boolean }): Promise<MessageInitShape<typeof DeregisterResponseSchema>>;
  setLogLevel?(level: string): Promise<MessageInitShape<typeof SetLogLevelResponseSchema>>;
  authorizedKeys?(opts: { user: string; fingerprint: string }): Promise<MessageInitShape<typeof AuthorizedKeysResponseSchema>>;
  tailLogs?(opts: { afterSeq: bigint; limit: number }): Promise<MessageInitShape<typeof TailLogsResponseSchema>>;
  /** Prometheus text exposition of the metrics and the telemetry counters. */
  metrics?(): Promise<{ contentType: string; text: string }>;
  /** Bridge user access: one client's configuration (`user`: label or public key). */
  userAccessConfig?(user: string): Promise<MessageInitShape<typeof GetUserAccessConfigResponseSchema>>;
  /** Bridge user access: the clients with live tunnel data. */
  userAccessPeers?(): Promise<MessageInitShape<typeof ListUserAccessPeersResponseSchema>>;
}
