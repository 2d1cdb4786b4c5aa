import type { ReactElement } from "react";
import type { GetStatusResponse } from "../../../proto/gen/plexd/node/v1/node_pb.js";
import { age } from "../../format.js";
import { pad } from "../layout.js";
import type { PeerRow } from "../reducer.js";
import type { Ui } from "../ui.js";

export interface TelemetryPanelProps {
  status: GetStatusResponse | undefined;
  peers: PeerRow[];
  now: number;
  maxRows: number;
  columns: number;
  dim: boolean;
}

/** Delivery of each telemetry pipeline (buffered, dropped, last flush) and the latest RTT/loss per peer (docs/telemetry.md). */
export function makeTelemetryPanel({ React, ink }: Ui): (props: TelemetryPanelProps) => ReactElement {
  const h = React.createElement;
  const { Box, Text } = ink;
  return function TelemetryPanel({ status: s, peers, now, maxRows, columns, dim }: TelemetryPanelProps): ReactElement {
    const text = (key: string, t: string, color?: string, bold = false): ReactElement =>
      h(Text, { key, wrap: "truncate", dimColor: dim, bold, ...(dim || color === undefined ? {} : { color }) }, pad(t, columns).trimEnd());
    if (s === undefined) return h(Text, { dimColor: true }, "no status yet");
    const pipelines = s.pipelines.map((p) => {
      const dropped = p.droppedOverflowTotal + p.droppedOversizeTotal + p.droppedRejectedTotal;
      const last = p.lastFlushAt === undefined ? "never" : `${p.lastFlushOutcome || "?"} ${age(p.lastFlushAt, now)}`;
      const paused = p.paused === "" ? "" : `  PAUSED ${p.paused}`;
      const color = p.paused !== "" || (p.lastFlushOutcome !== "" && p.lastFlushOutcome !== "ok") ? "yellow" : dropped > 0n ? "yellow" : undefined;
      return text(`p-${p.name}`, `  ${p.name.padEnd(8)} buffered ${String(p.buffered).padStart(6)}  sent ${String(p.sentTotal).padStart(8)}  dropped ${String(dropped).padStart(5)}  last flush ${last}${paused}`, color);
    });
    const probed = peers.filter((p) => p.rttMs !== undefined || p.lossPercent !== undefined);
    const lines: ReactElement[] = [
      text("pipes-h", "DELIVERY", undefined, true),
      ...(pipelines.length === 0 ? [text("pipes-none", "  no telemetry pipeline running (observe, logs and audit are off)")] : pipelines),
      text("lat-h", "PEER LATENCY (ICMP over the mesh)", undefined, true),
      ...(probed.length === 0
        ? [text("lat-none", "  no probe yet")]
        : probed.map((p) =>
            text(
              `l-${p.peerId}`,
              `  ${p.peerId.padEnd(24)} rtt ${p.rttMs === undefined ? "-" : `${p.rttMs.toFixed(1)} ms`}  loss ${p.lossPercent === undefined ? "-" : `${Math.round(p.lossPercent)}%`}`,
              p.lossPercent !== undefined && p.lossPercent >= 100 ? "red" : p.lossPercent !== undefined && p.lossPercent > 0 ? "yellow" : undefined,
            ),
          )),
    ];
    return h(Box, { flexDirection: "column" }, ...lines.slice(0, Math.max(1, maxRows)));
  };
}
