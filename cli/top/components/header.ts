import type { ReactElement } from "react";
import { age, shortDuration } from "../../format.js";
import { fitSegments, pad, type Segment } from "../layout.js";
import { uptimeNow, type TopState } from "../reducer.js";
import type { Ui } from "../ui.js";

export interface HeaderProps {
  state: TopState;
  now: number;
}

interface Part extends Segment {
  color?: string;
  bold?: boolean;
}

const severityColor: Record<string, string> = { critical: "red", warning: "yellow", info: "blue" };
/** Health lines in the header; the NAT & health panel lists them all. */
export const maxHealthLines = 3;

const clock = (ms: number): string => new Date(ms).toTimeString().slice(0, 8);

/** How many lines the header takes (the body gets the rest of the terminal). */
export function headerLines(state: TopState): number {
  if (state.status === undefined) return state.connected ? 1 : 2;
  if (!state.connected) return 3;
  const n = state.status.health.length;
  return 2 + (n === 0 ? 1 : Math.min(n, maxHealthLines) + (n > maxHealthLines ? 1 : 0));
}

export function makeHeader({ React, ink }: Ui): (props: HeaderProps) => ReactElement {
  const h = React.createElement;
  const { Box, Text } = ink;
  const line = (key: string, parts: Part[], width: number, dim: boolean): ReactElement =>
    h(
      Box,
      { key },
      ...fitSegments(parts, width).map((p, i) =>
        h(Text, { key: i, wrap: "truncate", bold: p.bold === true, dimColor: dim, ...(dim || p.color === undefined ? {} : { color: p.color }) }, `${i > 0 ? "  " : ""}${p.text}`),
      ),
    );
  return function Header({ state, now }: HeaderProps): ReactElement {
    const s = state.status;
    const width = state.columns;
    const unreachable = `agent not reachable — retrying${state.error === undefined ? "" : ` (${state.error})`}`;
    if (s === undefined) {
      return h(
        Box,
        { flexDirection: "column" },
        h(Text, { bold: true }, "plexd top"),
        state.connected ? null : h(Text, { color: "red", bold: true, wrap: "truncate" }, unreachable),
      );
    }
    // Stale: the agent does not answer. Its last data is shown greyed with its time, and
    // nothing claims a live state (connected, health ok) that nobody can vouch for now.
    const stale = !state.connected;
    const first: Part[] = [
      { text: s.nodeId || "(unregistered)", priority: 0, bold: true },
      ...(s.self?.hostname ? [{ text: s.self.hostname, priority: 4 }] : []),
      { text: s.meshIp || "-", priority: 1 },
      { text: s.mode, priority: 5 },
      { text: `v${s.version}`, priority: 6 },
      { text: s.phase, priority: 0, color: s.phase === "connected" ? "green" : "yellow" },
      { text: `up ${uptimeNow(state, now)}`, priority: 2 },
      ...(state.paused ? [{ text: "[PAUSED]", priority: 0, color: "magenta", bold: true }] : []),
    ];
    if (stale) {
      const at = state.lastGoodAt ?? state.statusAt ?? now;
      return h(
        Box,
        { flexDirection: "column" },
        line("l1", first, width, true),
        h(Text, { color: "red", bold: true, wrap: "truncate" }, pad(unreachable, width).trimEnd()),
        h(Text, { dimColor: true, wrap: "truncate" }, pad(`last data from ${clock(at)} (${shortDuration(now - at)} ago), greyed until the agent answers`, width).trimEnd()),
      );
    }
    const sse = s.sse;
    const cp = sse?.connected === true ? `connected${sse.since === undefined ? "" : ` for ${age(sse.since, now).replace(/ ago$/, "")}`}` : "disconnected";
    const second: Part[] = [
      { text: `control plane ${cp}`, priority: 0, color: sse?.connected === true ? "green" : "red" },
      { text: `(${sse?.reconnects ?? 0} reconnects)`, priority: 4 },
      { text: `heartbeat ${age(s.lastHeartbeat?.at, now)}`, priority: 1, ...(s.lastHeartbeat?.ok === false ? { color: "red" } : {}) },
      { text: `reconcile ${age(s.lastReconcile?.at, now)}`, priority: 2, ...(s.lastReconcile?.ok === false ? { color: "yellow" } : {}) },
      { text: `NAT ${s.nat?.publicEndpoint || "-"}${s.nat?.type ? ` ${s.nat.type}` : ""}`, priority: 3 },
    ];
    const health =
      s.health.length === 0
        ? [h(Text, { key: "ok", color: "green" }, "health ok")]
        : [
            ...s.health.slice(0, maxHealthLines).map((c) =>
              h(Text, { key: c.code, color: severityColor[c.severity] ?? "white", wrap: "truncate" }, pad(`${c.severity.toUpperCase()} ${c.code}: ${c.text} (${age(c.since, now)})`, width).trimEnd()),
            ),
            ...(s.health.length > maxHealthLines ? [h(Text, { key: "more", dimColor: true }, `… ${s.health.length - maxHealthLines} more (Tab to NAT & health)`)] : []),
          ];
    return h(Box, { flexDirection: "column" }, line("l1", first, width, false), line("l2", second, width, false), ...health);
  };
}
