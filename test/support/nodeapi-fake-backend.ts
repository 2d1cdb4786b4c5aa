import { createLogger } from "../../agent/util/log.js";
import type { AgentEvent, NodeApiBackend, PeerInfo, PoliciesInfo, StatusSnapshot } from "../../agent/nodeapi/backend.js";
import { startNodeApi, type NodeApiServer } from "../../agent/nodeapi/server.js";
import { NodeState } from "../../agent/nodeapi/state/node-state.js";

// An in-memory NodeApiBackend for tests, the CLI benchmark and the TUI smoke test: the
// data is whatever the test sets, and every setter notifies subscribers the way the agent
// does, so streams can be exercised without an agent.

export function sampleStatus(now = Date.now()): StatusSnapshot {
  return {
    version: "0.1.0",
    mode: "node",
    phase: "running",
    nodeId: "node_fake01",
    meshIp: "10.100.0.1",
    startedAt: now - 3_723_000,
    binaryChecksum: `sha256:${"ab".repeat(32)}`,
    sse: { connected: true, since: now - 60_000, reconnects: 2, lastEventId: "evt_000042" },
    lastHeartbeat: { at: now - 10_000, ok: true },
    lastReconcile: { at: now - 20_000, ok: true, driftCount: 0 },
    nat: { publicEndpoint: "198.51.100.7:51820", type: "full_cone" },
    peerCount: 2,
    privhelperOk: true,
    health: [],
    counters: { events_received: 42, reconcile_cycles: 7 },
    self: { hostname: "fake01", publicKey: "F".repeat(43) + "=", interface: "plexd0", listenPort: 51820 },
    logLevel: "info",
  };
}

export function samplePeers(now = Date.now()): PeerInfo[] {
  return [
    {
      peerId: "node_alpha",
      meshIp: "10.100.0.2",
      publicKey: "A".repeat(43) + "=",
      endpoint: "192.0.2.2:51820",
      visible: true,
      lastHandshake: now - 5_000,
      rxBytes: 1_000_000n,
      txBytes: 250_000n,
      rttMs: 1.5,
      relayed: false,
      hostname: "alpha",
    },
    {
      peerId: "node_bravo",
      meshIp: "10.100.0.3",
      publicKey: "B".repeat(43) + "=",
      endpoint: "192.0.2.3:51820",
      visible: true,
      rxBytes: 0n,
      txBytes: 0n,
      relayed: false,
    },
    {
      peerId: "node_hidden",
      meshIp: "10.100.0.9",
      publicKey: "C".repeat(43) + "=",
      endpoint: "",
      visible: false,
      rxBytes: 0n,
      txBytes: 0n,
      relayed: false,
    },
  ];
}

export function samplePolicies(): PoliciesInfo {
  return {
    policies: [{ id: "pol_web", rules: [{ src: "role=web", dst: "role=db", port: 5432, protocol: "tcp", action: "allow" }] }],
    invalidRules: [],
    firewallRules: [{ id: "r1a2b3c4", chain: "plexd-input", text: "ip saddr 10.100.0.2 tcp dport 5432 accept", packets: 12n, bytes: 3456n }],
    default: "deny",
  };
}

export class FakeBackend implements NodeApiBackend {
  statusValue: StatusSnapshot;
  peers: PeerInfo[];
  policies: PoliciesInfo;
  /** Unset: Deregister answers unimplemented; a test sets it to play the agent. */
  declare deregister?: NonNullable<NodeApiBackend["deregister"]>;
  readonly #statusListeners = new Set<() => void>();
  readonly #eventListeners = new Set<(e: AgentEvent) => void>();

  constructor(init?: { status?: StatusSnapshot; peers?: PeerInfo[]; policies?: PoliciesInfo }) {
    this.statusValue = init?.status ?? sampleStatus();
    this.peers = init?.peers ?? samplePeers();
    this.policies = init?.policies ?? samplePolicies();
  }

  status(): StatusSnapshot {
    return { ...this.statusValue, peerCount: this.peers.filter((p) => p.visible).length };
  }

  subscribeStatus(listener: () => void): () => void {
    this.#statusListeners.add(listener);
    return () => this.#statusListeners.delete(listener);
  }

  listPeers(opts: { all: boolean }): PeerInfo[] {
    return this.peers.filter((p) => opts.all || p.visible).map((p) => ({ ...p }));
  }

  listPolicies(opts: { rules: boolean }): PoliciesInfo {
    return { ...this.policies, firewallRules: opts.rules ? this.policies.firewallRules : [] };
  }

  subscribeEvents(listener: (event: AgentEvent) => void): () => void {
    this.#eventListeners.add(listener);
    return () => this.#eventListeners.delete(listener);
  }

  /** Number of open Watch / WatchStatus subscriptions (tests wait on it). */
  get subscribers(): { status: number; events: number } {
    return { status: this.#statusListeners.size, events: this.#eventListeners.size };
  }

  setStatus(patch: Partial<StatusSnapshot>): void {
    this.statusValue = { ...this.statusValue, ...patch };
    for (const l of this.#statusListeners) l();
  }

  setPeers(peers: PeerInfo[]): void {
    this.peers = peers;
    for (const l of this.#statusListeners) l();
  }

  emit(event: Omit<AgentEvent, "at"> & { at?: number }): void {
    const e: AgentEvent = { at: event.at ?? Date.now(), kind: event.kind, subject: event.subject, detail: event.detail };
    for (const l of this.#eventListeners) l(e);
  }
}

/**
 * A node API server on `socketPath` backed by FakeBackend and a NodeState in `dataDir` whose
 * control plane answers every request with 404 (tests, the CLI benchmark, the TUI smoke test).
 */
export async function startFakeNodeApi(opts: { socketPath: string; dataDir: string; signal: AbortSignal }): Promise<{
  server: NodeApiServer;
  backend: FakeBackend;
  state: NodeState;
}> {
  const log = createLogger({ name: "fake-nodeapi", level: "silent" });
  const state = await NodeState.open({ dataDir: opts.dataDir, nodeId: () => "node_fake01", cpRequest: async () => ({ status: 404, body: {} }), log });
  await state.applyDownstream({
    metadata: { region: "eu-west", role: "web" },
    data: [{ key: "app-config", content_type: "application/json", payload: { replicas: 3 }, version: 2, updated_at: "2025-01-15T10:30:00Z" }],
    secretRefs: [{ key: "tls-cert", version: 1 }],
  });
  const backend = new FakeBackend();
  const server = await startNodeApi({ socketPath: opts.socketPath, backend, state, log, signal: opts.signal });
  return { server, backend, state };
}
