import type { ReactElement } from "react";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Execution } from "../../../proto/gen/plexd/node/v1/node_pb.js";
import { shortDuration } from "../../format.js";
import type { Ui } from "../ui.js";

export interface ExecutionsPanelProps {
  executions: Execution[];
  now: number;
  maxRows: number;
  columns: number;
  dim: boolean;
}

const statusColor: Record<string, string> = { running: "cyan", success: "green", failure: "red", timeout: "yellow", cancelled: "yellow", error: "red" };

/** Running and the latest finished actions, newest first, as the agent lists them. */
export function makeExecutionsPanel({ React, ink }: Ui): (props: ExecutionsPanelProps) => ReactElement {
  const h = React.createElement;
  const { Box, Text } = ink;
  return function ExecutionsPanel({ executions, now, maxRows, columns, dim }: ExecutionsPanelProps): ReactElement {
    const width = Math.max(20, columns);
    return h(
      Box,
      { flexDirection: "column" },
      h(Text, { bold: true, dimColor: dim, wrap: "truncate" }, `${"STATUS".padEnd(10)} ${"EXIT".padStart(4)}  ${"STARTED".padEnd(8)} ${"TOOK".padEnd(8)} ${"BY".padEnd(16)} ACTION / EXECUTION`.slice(0, width)),
      executions.length === 0 ? h(Text, { dimColor: true }, "no executions yet") : null,
      ...executions.slice(0, Math.max(1, maxRows)).map((e) =>
        h(
          Box,
          { key: e.executionId },
          h(Text, { color: statusColor[e.status] ?? "white", dimColor: dim }, e.status.padEnd(10)),
          h(Text, { dimColor: dim, wrap: "truncate-end" }, ` ${(e.status === "running" ? "-" : String(e.exitCode)).padStart(4)}  ${(e.startedAt === undefined ? "-" : `${shortDuration(now - timestampMs(e.startedAt))} ago`).padEnd(8)} ${(e.duration || "-").padEnd(8)} ${e.triggeredBy.padEnd(16)} ${e.action}  ${e.executionId}`.slice(0, Math.max(10, width - 10))),
        ),
      ),
    );
  };
}
