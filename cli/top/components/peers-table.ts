import type { ReactElement } from "react";
import { rate, shortDuration } from "../../format.js";
import { fitColumns, pad, type Column } from "../layout.js";
import { peerState, type PeerRow, type SortColumn } from "../reducer.js";
import type { Ui } from "../ui.js";

export interface PeersTableProps {
  peers: PeerRow[];
  sort: SortColumn;
  filter: string;
  filtering: boolean;
  now: number;
  /** Rows available for peer lines. */
  maxRows: number;
  columns: number;
  /** Stale data (agent unreachable): greyed. */
  dim: boolean;
}

const stateColor = { up: "green", stale: "yellow", never: "gray", quar: "red" } as const;

// Canonical order left to right; `priority` decides what a narrow terminal keeps (80 columns
// keep peer, mesh IP, state, handshake, RX, TX and RTT).
const columnsFor = (now: number): Column<PeerRow>[] => [
  { key: "peer", title: "PEER", priority: 0, max: 24, cell: (p) => p.peerId },
  { key: "host", title: "HOST", priority: 7, max: 16, cell: (p) => p.hostname || "-" },
  { key: "ip", title: "MESH IP", priority: 1, max: 15, cell: (p) => p.meshIp },
  { key: "state", title: "STATE", priority: 2, max: 5, cell: (p) => peerState(p, now) },
  { key: "endpoint", title: "ENDPOINT", priority: 6, max: 21, cell: (p) => (p.endpoint || "-") + (p.relayed ? "*" : "") },
  { key: "handshake", title: "HANDSHAKE", priority: 3, max: 9, cell: (p) => (p.lastHandshake === undefined ? "never" : shortDuration(now - p.lastHandshake)) },
  { key: "rx", title: "RX", priority: 4, max: 11, cell: (p) => rate(p.rxRate), align: "right" },
  { key: "tx", title: "TX", priority: 4, max: 11, cell: (p) => rate(p.txRate), align: "right" },
  { key: "rtt", title: "RTT", priority: 5, max: 8, cell: (p) => (p.rttMs === undefined ? "-" : `${p.rttMs.toFixed(1)}ms`), align: "right" },
];

export function makePeersTable({ React, ink }: Ui): (props: PeersTableProps) => ReactElement {
  const h = React.createElement;
  const { Box, Text } = ink;
  return function PeersTable({ peers, sort, filter, filtering, now, maxRows, columns, dim }: PeersTableProps): ReactElement {
    const quarantined = peers.filter((p) => p.quarantineReason !== undefined);
    const notes = Math.min(quarantined.length, 3) + (quarantined.length > 3 ? 1 : 0);
    const visible = peers.slice(0, Math.max(1, maxRows - notes));
    const title = (c: Column<PeerRow>): string => (c.key === sort ? `${c.title}▼` : c.title);
    const shown = fitColumns(columnsFor(now), visible, columns, title);
    const head = shown.map((c) => pad(title(c), c.width, c.align)).join(" ");
    return h(
      Box,
      { flexDirection: "column" },
      h(
        Text,
        { dimColor: !filtering, wrap: "truncate" },
        filtering ? `filter: ${filter}▏ (Enter keep, Esc clear)` : filter !== "" ? `filter: ${filter}  (${peers.length} match, Esc clears)` : `${peers.length} peers  sort: ${sort}`,
      ),
      h(Text, { bold: true, dimColor: dim, wrap: "truncate" }, head),
      peers.length === 0 ? h(Text, { dimColor: true }, filter === "" ? "no peers" : "no peer matches the filter") : null,
      ...visible.map((p) =>
        h(
          Box,
          { key: p.peerId },
          ...shown.map((c, i) =>
            h(
              Text,
              { key: c.key, wrap: "truncate", dimColor: dim, ...(c.key === "state" && !dim ? { color: stateColor[peerState(p, now)] } : {}) },
              pad(c.cell(p), c.width, c.align) + (i < shown.length - 1 ? " " : ""),
            ),
          ),
        ),
      ),
      peers.length > visible.length ? h(Text, { dimColor: true }, `… ${peers.length - visible.length} more`) : null,
      // Quarantined peers are not in the kernel; the reason is what an operator needs to fix it.
      ...quarantined.slice(0, 3).map((p) => h(Text, { key: `q-${p.peerId}`, color: "red", wrap: "truncate-end" }, `quarantined ${p.peerId}: ${p.quarantineReason ?? ""}`)),
      quarantined.length > 3 ? h(Text, { color: "red", dimColor: true }, `… ${quarantined.length - 3} more quarantined (plexd peers --all)`) : null,
    );
  };
}
