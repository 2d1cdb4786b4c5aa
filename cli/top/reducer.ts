import { timestampMs } from "@bufbuild/protobuf/wkt";
import { parseDuration } from "../../proto/lib/duration.js";
import type { Execution, GetBridgeStatusResponse, GetStatusResponse, ListUserAccessPeersResponse, Peer, RenderedRule, WatchResponse } from "../../proto/gen/plexd/node/v1/node_pb.js";

// All of `plexd top`'s state in one pure reducer: the streams (WatchStatus, Watch), the
// periodic ListPeers/ListPolicies polls and the keyboard all become actions, so every view
// is a function of this state and can be tested without a terminal or an agent.

export type Panel = "peers" | "rules" | "events" | "health" | "executions" | "telemetry" | "bridge";
export const panels: Panel[] = ["peers", "rules", "events", "health", "executions", "telemetry", "bridge"];
export const sortColumns = ["peer", "state", "endpoint", "handshake", "rx", "tx", "rtt"] as const;
export type SortColumn = (typeof sortColumns)[number];

/** A handshake older than this means the tunnel is down (WireGuard rekeys every 2 minutes). */
export const handshakeStaleMs = 180_000;
export const maxEvents = 200;

export interface PeerRow {
  peerId: string;
  hostname: string;
  meshIp: string;
  endpoint: string;
  relayed: boolean;
  visible: boolean;
  /** Epoch ms, undefined when never. */
  lastHandshake: number | undefined;
  rxBytes: bigint;
  txBytes: bigint;
  /** Bytes per second from the last two polls; undefined until two polls exist. */
  rxRate: number | undefined;
  txRate: number | undefined;
  rttMs: number | undefined;
  /** Loss of the latest latency probe, 0-100; undefined before one. */
  lossPercent?: number | undefined;
  /** Why the agent keeps this peer out of the kernel; undefined when admitted. */
  quarantineReason: string | undefined;
}

export interface FeedItem {
  at: number;
  kind: string;
  subject: string;
  detail: string;
}

export interface TopState {
  connected: boolean;
  /** Why the agent is unreachable, shown while retrying. */
  error: string | undefined;
  status: GetStatusResponse | undefined;
  /** When the last status arrived (epoch ms): the uptime runs on from it by the clock. */
  statusAt: number | undefined;
  /** When the agent last answered anything (epoch ms); shown beside stale data. */
  lastGoodAt: number | undefined;
  peers: PeerRow[];
  /** When `peers` was polled (epoch ms). */
  peersAt: number | undefined;
  rules: RenderedRule[];
  events: FeedItem[];
  /** Running and recently finished actions (ListExecutions). */
  executions: Execution[];
  /** GetBridgeStatus; undefined until answered (or from an agent without it). */
  bridge: GetBridgeStatusResponse | undefined;
  /** ListUserAccessPeers on a bridge (the Bridge panel's user list); undefined until answered. */
  userAccess: ListUserAccessPeersResponse | undefined;
  panel: Panel;
  sort: SortColumn;
  filter: string;
  /** True while the `/` filter prompt takes keystrokes. */
  filtering: boolean;
  paused: boolean;
  /** The `?` overlay. */
  help: boolean;
  columns: number;
  rows: number;
}

export type TopAction =
  | { type: "connected" }
  | { type: "disconnected"; error: string }
  | { type: "status"; status: GetStatusResponse; at: number }
  | { type: "peers"; peers: Peer[]; at: number }
  | { type: "rules"; rules: RenderedRule[] }
  | { type: "executions"; executions: Execution[] }
  | { type: "bridge"; bridge: GetBridgeStatusResponse }
  | { type: "userAccess"; userAccess: ListUserAccessPeersResponse }
  | { type: "event"; event: WatchResponse; now: number }
  | { type: "cycleSort" }
  | { type: "switchPanel" }
  | { type: "togglePause" }
  | { type: "toggleHelp" }
  | { type: "escape" }
  | { type: "startFilter" }
  | { type: "filterInput"; text: string }
  | { type: "filterBackspace" }
  | { type: "endFilter"; keep: boolean }
  | { type: "resize"; columns: number; rows: number };

export function initialState(size: { columns: number; rows: number } = { columns: 100, rows: 30 }): TopState {
  return {
    connected: false,
    error: undefined,
    status: undefined,
    statusAt: undefined,
    lastGoodAt: undefined,
    peers: [],
    peersAt: undefined,
    rules: [],
    events: [],
    executions: [],
    bridge: undefined,
    userAccess: undefined,
    panel: "peers",
    sort: "peer",
    filter: "",
    filtering: false,
    paused: false,
    help: false,
    columns: size.columns,
    rows: size.rows,
  };
}

function rateOf(now: bigint, before: bigint | undefined, seconds: number): number | undefined {
  if (before === undefined || seconds <= 0) return undefined;
  // A counter that went backwards means the interface was recreated: no rate this round.
  if (now < before) return undefined;
  return Number(now - before) / seconds;
}

function peerRows(prev: TopState, peers: Peer[], at: number): PeerRow[] {
  const before = new Map(prev.peers.map((p) => [p.peerId, p]));
  const seconds = prev.peersAt === undefined ? 0 : (at - prev.peersAt) / 1000;
  return peers.map((p) => {
    const old = before.get(p.peerId);
    return {
      peerId: p.peerId,
      hostname: p.hostname,
      meshIp: p.meshIp,
      endpoint: p.endpoint,
      relayed: p.relayed,
      visible: p.visible,
      lastHandshake: p.lastHandshake === undefined ? undefined : timestampMs(p.lastHandshake),
      rxBytes: p.rxBytes,
      txBytes: p.txBytes,
      rxRate: rateOf(p.rxBytes, old?.rxBytes, seconds),
      txRate: rateOf(p.txBytes, old?.txBytes, seconds),
      rttMs: p.rttMs > 0 ? p.rttMs : undefined,
      lossPercent: p.lossPercent,
      quarantineReason: p.quarantineReason === "" ? undefined : p.quarantineReason,
    };
  });
}

export function reducer(state: TopState, action: TopAction): TopState {
  switch (action.type) {
    case "connected":
      return state.connected && state.error === undefined ? state : { ...state, connected: true, error: undefined };
    case "disconnected":
      return { ...state, connected: false, error: action.error };
    case "status":
      if (state.paused) return { ...state, connected: true, error: undefined, lastGoodAt: action.at };
      return { ...state, connected: true, error: undefined, status: action.status, statusAt: action.at, lastGoodAt: action.at };
    case "peers":
      if (state.paused) return { ...state, connected: true, error: undefined, lastGoodAt: action.at };
      return { ...state, connected: true, error: undefined, peers: peerRows(state, action.peers, action.at), peersAt: action.at, lastGoodAt: action.at };
    case "rules":
      if (state.paused) return state;
      return { ...state, rules: action.rules };
    case "executions":
      if (state.paused) return state;
      return { ...state, executions: action.executions };
    case "bridge":
      if (state.paused) return state;
      return { ...state, bridge: action.bridge };
    case "userAccess":
      if (state.paused) return state;
      return { ...state, userAccess: action.userAccess };
    case "event": {
      // Events are kept while paused (the feed is a log; pausing freezes only the live tables).
      const e = action.event;
      const item: FeedItem = { at: e.at === undefined ? action.now : timestampMs(e.at), kind: e.kind, subject: e.subject, detail: e.detail };
      return { ...state, events: [item, ...state.events].slice(0, maxEvents) };
    }
    case "cycleSort":
      return { ...state, sort: sortColumns[(sortColumns.indexOf(state.sort) + 1) % sortColumns.length]! };
    case "switchPanel":
      return { ...state, panel: panels[(panels.indexOf(state.panel) + 1) % panels.length]! };
    case "togglePause":
      return { ...state, paused: !state.paused };
    case "toggleHelp":
      return { ...state, help: !state.help };
    case "escape":
      // Closes what is open, innermost first: the help, then an applied filter.
      if (state.help) return { ...state, help: false };
      return state.filter === "" ? state : { ...state, filter: "" };
    case "startFilter":
      return { ...state, filtering: true };
    case "filterInput":
      return state.filtering ? { ...state, filter: state.filter + action.text } : state;
    case "filterBackspace":
      return state.filtering ? { ...state, filter: state.filter.slice(0, -1) } : state;
    case "endFilter":
      return { ...state, filtering: false, filter: action.keep ? state.filter : "" };
    case "resize":
      return state.columns === action.columns && state.rows === action.rows ? state : { ...state, columns: action.columns, rows: action.rows };
  }
}

// ---------------------------------------------------------------- selectors

export type PeerState = "up" | "stale" | "never" | "quar";

export function peerState(p: PeerRow, now: number): PeerState {
  if (p.quarantineReason !== undefined) return "quar";
  if (p.lastHandshake === undefined) return "never";
  return now - p.lastHandshake <= handshakeStaleMs ? "up" : "stale";
}

const stateOrder: Record<PeerState, number> = { up: 0, stale: 1, never: 2, quar: 3 };

function compare(a: PeerRow, b: PeerRow, column: SortColumn, now: number): number {
  switch (column) {
    case "peer":
      return a.peerId.localeCompare(b.peerId);
    case "state":
      return stateOrder[peerState(a, now)] - stateOrder[peerState(b, now)];
    case "endpoint":
      return a.endpoint.localeCompare(b.endpoint);
    case "handshake":
      // Most recent first; never last.
      return (b.lastHandshake ?? -Infinity) - (a.lastHandshake ?? -Infinity);
    case "rx":
      return (b.rxRate ?? -1) - (a.rxRate ?? -1) || Number(b.rxBytes - a.rxBytes);
    case "tx":
      return (b.txRate ?? -1) - (a.txRate ?? -1) || Number(b.txBytes - a.txBytes);
    case "rtt":
      return (a.rttMs ?? Infinity) - (b.rttMs ?? Infinity);
  }
}

/** The agent's uptime now: the last reported one, run on by the clock while the agent answers. */
export function uptimeNow(state: TopState, now: number): string {
  const s = state.status;
  if (s === undefined) return "";
  const base = parseDuration(s.uptime);
  if (base === undefined || state.statusAt === undefined || !state.connected || state.paused) return s.uptime;
  const total = Math.floor((base + Math.max(0, now - state.statusAt)) / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = total % 60;
  return `${h > 0 ? `${h}h` : ""}${h > 0 || m > 0 ? `${m}m` : ""}${sec}s`;
}

/** The peers table as shown: filtered (substring of id, hostname, mesh IP or endpoint) and sorted. */
export function visiblePeers(state: TopState, now: number): PeerRow[] {
  const f = state.filter.toLowerCase();
  const rows = f === "" ? state.peers : state.peers.filter((p) => [p.peerId, p.hostname, p.meshIp, p.endpoint].some((s) => s.toLowerCase().includes(f)));
  return [...rows].sort((a, b) => compare(a, b, state.sort, now) || a.peerId.localeCompare(b.peerId));
}
