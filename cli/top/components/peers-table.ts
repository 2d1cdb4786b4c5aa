import type { ReactElement } from "react";
import { rate, shortDuration } from "../../format.js";
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
}

const stateColor = { up: "green", stale: "yellow", never: "gray" } as const;

interface Col {
  key: SortColumn | "ip";
  title: string;
  width: number;
  cell: (p: PeerRow, now: number) => string;
}

const cols: Col[] = [
  { key: "peer", title: "PEER", width: 18, cell: (p) => p.peerId },
  { key: "ip", title: "MESH IP", width: 15, cell: (p) => p.meshIp },
  { key: "state", title: "STATE", width: 6, cell: (p, now) => peerState(p, now) },
  { key: "endpoint", title: "ENDPOINT", width: 22, cell: (p) => (p.endpoint || "-") + (p.relayed ? "*" : "") },
  { key: "handshake", title: "HANDSHAKE", width: 10, cell: (p, now) => (p.lastHandshake === undefined ? "never" : shortDuration(now - p.lastHandshake)) },
  { key: "rx", title: "RX", width: 11, cell: (p) => rate(p.rxRate) },
  { key: "tx", title: "TX", width: 11, cell: (p) => rate(p.txRate) },
  { key: "rtt", title: "RTT", width: 8, cell: (p) => (p.rttMs === undefined ? "-" : `${p.rttMs.toFixed(1)}ms`) },
];

const fit = (text: string, width: number): string => (text.length > width ? `${text.slice(0, width - 1)}…` : text.padEnd(width));

export function makePeersTable({ React, ink }: Ui): (props: PeersTableProps) => ReactElement {
  const h = React.createElement;
  const { Box, Text } = ink;
  return function PeersTable({ peers, sort, filter, filtering, now, maxRows, columns }: PeersTableProps): ReactElement {
    // Drop columns from the right until the table fits the terminal.
    let shown = cols;
    while (shown.length > 3 && shown.reduce((n, c) => n + c.width + 1, 0) > columns) shown = shown.slice(0, -1);
    const head = shown.map((c) => fit(c.key === sort ? `${c.title}▼` : c.title, c.width)).join(" ");
    const visible = peers.slice(0, Math.max(1, maxRows));
    return h(
      Box,
      { flexDirection: "column" },
      h(
        Text,
        { dimColor: !filtering },
        filtering ? `filter: ${filter}▏ (Enter keep, Esc clear)` : filter !== "" ? `filter: ${filter}  (${peers.length} match)` : `${peers.length} peers  sort: ${sort}`,
      ),
      h(Text, { bold: true }, head),
      peers.length === 0 ? h(Text, { dimColor: true }, filter === "" ? "no peers" : "no peer matches the filter") : null,
      ...visible.map((p) =>
        h(
          Box,
          { key: p.peerId },
          ...shown.map((c, i) =>
            h(
              Text,
              { key: c.key, ...(c.key === "state" ? { color: stateColor[peerState(p, now)] } : {}) },
              fit(c.cell(p, now), c.width) + (i < shown.length - 1 ? " " : ""),
            ),
          ),
        ),
      ),
      peers.length > visible.length ? h(Text, { dimColor: true }, `… ${peers.length - visible.length} more`) : null,
    );
  };
}
