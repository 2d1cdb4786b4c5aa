import type { ReactElement } from "react";
import type { RenderedRule } from "../../../proto/gen/plexd/node/v1/node_pb.js";
import { bytes } from "../../format.js";
import type { Ui } from "../ui.js";

export interface RulesPanelProps {
  rules: RenderedRule[];
  maxRows: number;
  columns: number;
  dim: boolean;
}

export function makeRulesPanel({ React, ink }: Ui): (props: RulesPanelProps) => ReactElement {
  const h = React.createElement;
  const { Box, Text } = ink;
  return function RulesPanel({ rules, maxRows, columns, dim }: RulesPanelProps): ReactElement {
    // Busiest rules first: the panel answers "what is the firewall doing".
    const sorted = [...rules].sort((a, b) => Number(b.packets - a.packets) || a.id.localeCompare(b.id));
    return h(
      Box,
      { flexDirection: "column" },
      h(Text, { bold: true, dimColor: dim, wrap: "truncate" }, `${"PACKETS".padStart(10)} ${"BYTES".padStart(10)}  CHAIN         RULE`),
      rules.length === 0 ? h(Text, { dimColor: true }, "no firewall rules") : null,
      ...sorted.slice(0, Math.max(1, maxRows)).map((r) =>
        // A rule longer than the terminal ends in "…" rather than wrapping into the next one.
        h(Text, { key: r.id, dimColor: dim, wrap: "truncate-end" }, `${String(r.packets).padStart(10)} ${bytes(r.bytes).padStart(10)}  ${r.chain.padEnd(12).slice(0, 12)}  ${r.text}`.slice(0, Math.max(20, columns))),
      ),
    );
  };
}
