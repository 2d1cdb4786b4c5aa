import { fromJson, toJson, type DescMessage, type DescMethod, type JsonValue, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { DescMethodServerStreaming, DescMethodUnary } from "@bufbuild/protobuf";
import { ValueSchema, timestampFromMs, type Value } from "@bufbuild/protobuf/wkt";
import { formatSeconds } from "../../proto/lib/duration.js";
import { PlexdError } from "../../proto/lib/errors.js";
import { pause } from "../../proto/lib/timers.js";
import { AgentService, NodeStateService } from "../../proto/gen/plexd/node/v1/node_pb.js";
import { Health, HealthCheckResponse_ServingStatus as Serving } from "../../proto/gen/grpc/health/v1/health_pb.js";
import type { EntrySchema, GetStatusResponseSchema, PeerSchema, PipelineStatusSchema } from "../../proto/gen/plexd/node/v1/node_pb.js";
import type { PipelineCounters } from "../telemetry/delivery.js";
import { healthVerdict } from "../health/verdict.js";
import type { AccessClass, Caller } from "./access.js";
import type { AgentEvent, NodeApiBackend, PeerInfo, StatusSnapshot } from "./backend.js";
import type { EntrySummary, NodeState, StateChange, StateEntry } from "./state/node-state.js";

// The node API's handlers as plain async functions `(request, call) → response`, one table
// for both services. The Connect router and the REST routes bind the same entries, so both
// paths share access checks and behaviour (docs/node-api.md).

export interface Call {
  signal: AbortSignal;
  /** Who called (the actions socket authorizes per call). */
  caller?: Caller;
  /** Request headers of streaming calls (the actions socket reads its session token there). */
  headers?: Headers;
}

export interface UnaryOp {
  kind: "unary";
  method: DescMethod;
  access: AccessClass;
  fn: (req: MessageShape<DescMessage>, call: Call) => Promise<MessageInitShape<DescMessage>>;
}

export interface StreamOp {
  kind: "server_streaming";
  method: DescMethod;
  access: AccessClass;
  fn: (req: MessageShape<DescMessage>, call: Call) => AsyncIterable<MessageInitShape<DescMessage>>;
}

export type Op = UnaryOp | StreamOp;

function unary<I extends DescMessage, O extends DescMessage>(
  method: DescMethodUnary<I, O>,
  access: AccessClass,
  fn: (req: MessageShape<I>, call: Call) => Promise<MessageInitShape<O>> | MessageInitShape<O>,
): UnaryOp {
  return { kind: "unary", method, access, fn: async (req, call) => (await fn(req as MessageShape<I>, call)) as MessageInitShape<DescMessage> };
}

export function stream<I extends DescMessage, O extends DescMessage>(
  method: DescMethodServerStreaming<I, O>,
  access: AccessClass,
  fn: (req: MessageShape<I>, call: Call) => AsyncIterable<MessageInitShape<O>>,
): StreamOp {
  return { kind: "server_streaming", method, access, fn: (req, call) => fn(req as MessageShape<I>, call) as AsyncIterable<MessageInitShape<DescMessage>> };
}

// ------------------------------------------------------------------ conversions

export function toValue(json: unknown): Value {
  return fromJson(ValueSchema, json as JsonValue);
}

/** JSON of a Value; undefined when absent or empty (a Value with no kind is not JSON). */
export function fromValue(value: Value | undefined): unknown {
  return value === undefined || value.kind.case === undefined ? undefined : toJson(ValueSchema, value);
}

function entryMsg(e: StateEntry): MessageInitShape<typeof EntrySchema> {
  return { key: e.key, contentType: e.content_type, payload: toValue(e.payload), version: e.version, updatedAt: timestampFromMs(Date.parse(e.updated_at)) };
}

function summaryMsg(s: EntrySummary): { key: string; version: number; contentType: string; syncState: string } {
  return { key: s.key, version: s.version, contentType: s.content_type, syncState: s.sync_state ?? "" };
}

function stateCountsMsg(state: NodeState): { metadata: number; data: number; secrets: number; reports: number; reportsPending: number } {
  const c = state.counts();
  return { metadata: c.metadata, data: c.data, secrets: c.secrets, reports: c.reports, reportsPending: c.reports_pending };
}

const big = (n: number | bigint): bigint => (typeof n === "bigint" ? n : BigInt(Math.max(0, Math.trunc(n))));

export function statusMsg(s: StatusSnapshot, now: number, state: NodeState | undefined, peers?: PeerInfo[]): MessageInitShape<typeof GetStatusResponseSchema> {
  return {
    version: s.version,
    mode: s.mode,
    phase: s.phase,
    nodeId: s.nodeId,
    meshIp: s.meshIp,
    uptime: formatSeconds(now - s.startedAt),
    binaryChecksum: s.binaryChecksum,
    sse: {
      connected: s.sse.connected,
      reconnects: s.sse.reconnects,
      lastEventId: s.sse.lastEventId,
      ...(s.sse.since === undefined ? {} : { since: timestampFromMs(s.sse.since) }),
    },
    ...(s.lastHeartbeat === undefined ? {} : { lastHeartbeat: { at: timestampFromMs(s.lastHeartbeat.at), ok: s.lastHeartbeat.ok } }),
    ...(s.lastReconcile === undefined
      ? {}
      : { lastReconcile: { at: timestampFromMs(s.lastReconcile.at), ok: s.lastReconcile.ok, driftCount: s.lastReconcile.driftCount ?? 0 } }),
    nat: { publicEndpoint: s.nat.publicEndpoint, type: s.nat.type },
    peerCount: s.peerCount,
    privhelperOk: s.privhelperOk,
    stateCounts: state === undefined ? {} : stateCountsMsg(state),
    health: s.health.map((h) => ({ code: h.code, severity: h.severity, text: h.text, since: timestampFromMs(h.since) })),
    counters: Object.fromEntries(Object.entries(s.counters).map(([k, v]) => [k, big(v)])),
    ...(s.self === undefined || s.nodeId === ""
      ? {}
      : { self: { nodeId: s.nodeId, meshIp: s.meshIp, hostname: s.self.hostname, publicKey: s.self.publicKey, interface: s.self.interface, listenPort: s.self.listenPort } }),
    peers: (peers ?? []).map((p) => peerMsg(p, now)),
    healthStatus: healthVerdict(s.health),
    logLevel: s.logLevel ?? "",
    pipelines: (s.pipelines ?? []).map((p) => pipelineMsg(p.name, p.counters)),
  };
}

export function pipelineMsg(name: string, c: PipelineCounters): MessageInitShape<typeof PipelineStatusSchema> {
  const ts = (iso: string | null) => (iso === null ? undefined : timestampFromMs(Date.parse(iso)));
  const at = ts(c.last_flush_at);
  const ok = ts(c.last_success_at);
  return {
    name,
    buffered: big(c.buffered),
    sentTotal: big(c.sent_total),
    sentBatchesTotal: big(c.sent_batches_total),
    droppedOverflowTotal: big(c.dropped_overflow_total),
    droppedOversizeTotal: big(c.dropped_oversize_total),
    droppedRejectedTotal: big(c.dropped_rejected_total),
    sendErrorsTotal: big(c.send_errors_total),
    ...(at === undefined ? {} : { lastFlushAt: at }),
    lastFlushOutcome: c.last_flush_outcome ?? "",
    ...(ok === undefined ? {} : { lastSuccessAt: ok }),
    lastError: c.last_error ?? "",
    paused: c.paused ?? "",
    pushedTotal: big(c.pushed_total),
  };
}

export function peerMsg(p: PeerInfo, now: number): MessageInitShape<typeof PeerSchema> {
  return {
    peerId: p.peerId,
    meshIp: p.meshIp,
    endpoint: p.endpoint,
    visible: p.visible,
    ...(p.lastHandshake === undefined ? {} : { lastHandshake: timestampFromMs(p.lastHandshake) }),
    rxBytes: big(p.rxBytes),
    txBytes: big(p.txBytes),
    rttMs: p.rttMs ?? 0,
    ...(p.lossPercent === undefined ? {} : { lossPercent: p.lossPercent }),
    relayed: p.relayed,
    publicKey: p.publicKey,
    hostname: p.hostname ?? "",
    ...(p.lastHandshake === undefined ? {} : { handshakeAgeSeconds: Math.max(0, Math.floor((now - p.lastHandshake) / 1000)) }),
    quarantineReason: p.quarantineReason ?? "",
  };
}

// ------------------------------------------------------------------ streams

/**
 * Turns a subscribe(listener) feed into an async iterable that ends when `signal` aborts.
 * Bounded: a consumer that stops reading loses the oldest items rather than growing memory.
 */
export async function* feed<T>(subscribe: (push: (item: T) => void) => () => void, signal: AbortSignal, limit = 1000): AsyncGenerator<T> {
  const queue: T[] = [];
  let wake: (() => void) | undefined;
  const unsubscribe = subscribe((item) => {
    queue.push(item);
    if (queue.length > limit) queue.shift();
    wake?.();
  });
  const onAbort = (): void => wake?.();
  signal.addEventListener("abort", onAbort);
  try {
    while (!signal.aborted) {
      const item = queue.shift();
      if (item !== undefined) {
        yield item;
        continue;
      }
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
  } finally {
    unsubscribe();
    signal.removeEventListener("abort", onAbort);
  }
}


/** WatchStatus: a snapshot at once, then one per change, at most one per `minIntervalMs`. */
async function* watchStatus(backend: NodeApiBackend, state: NodeState | undefined, signal: AbortSignal, minIntervalMs: number) {
  let dirty = true;
  let wake: (() => void) | undefined;
  const poke = (): void => {
    dirty = true;
    wake?.();
  };
  const unsubs = [backend.subscribeStatus(poke), state?.subscribe(poke)];
  const onAbort = (): void => wake?.();
  signal.addEventListener("abort", onAbort);
  try {
    while (!signal.aborted) {
      if (!dirty) {
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        continue;
      }
      dirty = false;
      yield { status: statusMsg(await backend.status(), Date.now(), state) };
      await pause(minIntervalMs, signal);
    }
  } finally {
    for (const u of unsubs) u?.();
    signal.removeEventListener("abort", onAbort);
  }
}

// ------------------------------------------------------------------ grpc.health.v1

/** Services a health probe may name; "" is the agent as a whole (grpc health-checking protocol). */
const healthServices = new Set(["", NodeStateService.typeName, AgentService.typeName]);

async function servingStatus(backend: NodeApiBackend, service: string): Promise<Serving> {
  if (!healthServices.has(service)) return Serving.SERVICE_UNKNOWN;
  // A degraded node still serves; only a critical condition makes probes fail.
  return healthVerdict((await backend.status()).health) === "unhealthy" ? Serving.NOT_SERVING : Serving.SERVING;
}

/** Health.Watch: the status at once, then each change (the status feed's pace, at most 2 per second). */
async function* watchServing(backend: NodeApiBackend, service: string, signal: AbortSignal, minIntervalMs: number) {
  let last: Serving | undefined;
  for await (const _ of feed<true>((push) => {
    const unsubscribe = backend.subscribeStatus(() => push(true));
    push(true);
    return unsubscribe;
  }, signal, 1)) {
    const now = await servingStatus(backend, service);
    if (now !== last) yield { status: now };
    last = now;
    await pause(minIntervalMs, signal);
  }
}

// ------------------------------------------------------------------ the table

function optional<T>(fn: (() => Promise<T>) | undefined, what: string): () => Promise<T> {
  return fn ?? (() => Promise.reject(new PlexdError("unimplemented", `${what} is not available in this agent`)));
}

export interface ServiceDeps {
  backend: NodeApiBackend;
  state: NodeState | undefined;
  /** WatchStatus rate limit; 500 ms = at most 2 per second (docs/node-api.md). */
  statusIntervalMs?: number;
}

function needState(state: NodeState | undefined): NodeState {
  if (state === undefined) throw new PlexdError("unavailable", "node state is not available yet (node not registered)");
  return state;
}

export function buildOps(deps: ServiceDeps): Op[] {
  const { backend } = deps;
  const st = (): NodeState => needState(deps.state);
  const b = backend;
  return [
    // NodeStateService
    unary(NodeStateService.method.getState, "reader", () => ({
      metadata: st().metadata(),
      dataKeys: st().listData().map(summaryMsg),
      secretKeys: st().listSecrets(),
      reportKeys: st().listReports().map(summaryMsg),
    })),
    unary(NodeStateService.method.getMetadata, "reader", () => ({ metadata: st().metadata() })),
    unary(NodeStateService.method.getMetadataValue, "reader", (req) => ({ key: req.key, value: st().metadataValue(req.key) })),
    unary(NodeStateService.method.listData, "reader", () => ({ entries: st().listData().map(summaryMsg) })),
    unary(NodeStateService.method.getData, "reader", (req) => ({ entry: entryMsg(st().getData(req.key)) })),
    unary(NodeStateService.method.listSecrets, "reader", () => ({ secrets: st().listSecrets() })),
    unary(NodeStateService.method.getSecret, "secrets", (req, call) => st().getSecret(req.key, call.signal)),
    unary(NodeStateService.method.listReports, "reader", () => ({ entries: st().listReports().map(summaryMsg) })),
    unary(NodeStateService.method.getReport, "reader", (req) => ({ entry: entryMsg(st().getReport(req.key)) })),
    unary(NodeStateService.method.putReport, "reader", async (req) => {
      const entry = await st().putReport({ key: req.key, contentType: req.contentType, payload: fromValue(req.payload), ifMatch: req.ifMatch });
      return { entry: entryMsg(entry) };
    }),
    unary(NodeStateService.method.deleteReport, "reader", async (req) => {
      await st().deleteReport({ key: req.key, ifMatch: req.ifMatch });
      return {};
    }),
    stream(NodeStateService.method.watchState, "reader", (_req, call) => feed<StateChange>((push) => st().subscribe(push), call.signal)),

    // AgentService
    unary(AgentService.method.getStatus, "reader", async (req) => {
      const [s, peers] = await Promise.all([b.status(), req.includePeers ? b.listPeers({ all: false }) : undefined]);
      return statusMsg(s, Date.now(), deps.state, peers);
    }),
    unary(AgentService.method.getHealth, "reader", async () => {
      const s = await b.status();
      return { status: healthVerdict(s.health), phase: s.phase, conditions: s.health.map((h) => ({ ...h, since: timestampFromMs(h.since) })) };
    }),
    unary(Health.method.check, "reader", async (req) => {
      const status = await servingStatus(b, req.service);
      if (status === Serving.SERVICE_UNKNOWN) throw new PlexdError("not_found", `unknown service ${JSON.stringify(req.service)}`);
      return { status };
    }),
    stream(Health.method.watch, "reader", (req, call) => watchServing(b, req.service, call.signal, deps.statusIntervalMs ?? 500)),
    unary(AgentService.method.setLogLevel, "admin", (req) =>
      optional(b.setLogLevel === undefined ? undefined : () => b.setLogLevel!(req.level), "SetLogLevel")(),
    ),
    stream(AgentService.method.watchStatus, "reader", (_req, call) => watchStatus(b, deps.state, call.signal, deps.statusIntervalMs ?? 500)),
    stream(AgentService.method.watch, "reader", async function* (req, call) {
      const kinds = new Set(req.kinds);
      for await (const e of feed<AgentEvent>((push) => b.subscribeEvents(push), call.signal)) {
        if (kinds.size > 0 && !kinds.has(e.kind)) continue;
        yield { at: timestampFromMs(e.at), kind: e.kind, subject: e.subject, detail: e.detail };
      }
    }),
    unary(AgentService.method.listPeers, "reader", async (req) => {
      const now = Date.now();
      return { peers: (await b.listPeers({ all: req.all })).map((p) => peerMsg(p, now)) };
    }),
    unary(AgentService.method.listPolicies, "reader", async (req) => {
      const p = await b.listPolicies({ rules: req.rules });
      return {
        policies: p.policies,
        invalidRules: p.invalidRules,
        firewallRules: p.firewallRules.map((r) => ({ ...r, packets: big(r.packets), bytes: big(r.bytes) })),
        default: p.default,
      };
    }),
    unary(AgentService.method.listActions, "reader", () => optional(b.listActions?.bind(b), "ListActions")()),
    unary(AgentService.method.listExecutions, "reader", () => optional(b.listExecutions?.bind(b), "ListExecutions")()),
    unary(AgentService.method.listHooks, "reader", () => optional(b.listHooks?.bind(b), "ListHooks")()),
    unary(AgentService.method.verifyHooks, "reader", () => optional(b.verifyHooks?.bind(b), "VerifyHooks")()),
    unary(AgentService.method.reloadHooks, "admin", () => optional(b.reloadHooks?.bind(b), "ReloadHooks")()),
    unary(AgentService.method.getLogStatus, "reader", () => optional(b.logStatus?.bind(b), "GetLogStatus")()),
    unary(AgentService.method.getAuditStatus, "reader", (req) => optional(b.auditStatus === undefined ? undefined : () => b.auditStatus!(req.recent), "GetAuditStatus")()),
    unary(AgentService.method.getBridgeStatus, "reader", () => optional(b.bridgeStatus?.bind(b), "GetBridgeStatus")()),
    unary(AgentService.method.reloadConfig, "admin", () => optional(b.reloadConfig?.bind(b), "ReloadConfig")()),
    unary(AgentService.method.deregister, "admin", (req) =>
      optional(b.deregister === undefined ? undefined : () => b.deregister!({ purge: req.purge, force: req.force }), "Deregister")(),
    ),
    unary(AgentService.method.authorizedKeys, "admin", (req) =>
      optional(b.authorizedKeys === undefined ? undefined : () => b.authorizedKeys!({ user: req.user, fingerprint: req.fingerprint }), "AuthorizedKeys")(),
    ),
    unary(AgentService.method.tailLogs, "reader", (req) =>
      optional(b.tailLogs === undefined ? undefined : () => b.tailLogs!({ afterSeq: req.afterSeq, limit: req.limit }), "TailLogs")(),
    ),
    unary(AgentService.method.getMetrics, "reader", () => optional(b.metrics?.bind(b), "GetMetrics")()),
    // The client's preshared key travels in the answer: secrets class.
    unary(AgentService.method.getUserAccessConfig, "secrets", (req) => optional(b.userAccessConfig === undefined ? undefined : () => b.userAccessConfig!(req.user), "GetUserAccessConfig")()),
    unary(AgentService.method.listUserAccessPeers, "reader", () => optional(b.userAccessPeers?.bind(b), "ListUserAccessPeers")()),
  ];
}
