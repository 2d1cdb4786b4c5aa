import type { ReactElement } from "react";
import { keyHelp } from "../keys.js";
import type { Ui } from "../ui.js";

/** The `?` overlay: every key, in place of the panel until `?` or Esc. */
export function makeHelpOverlay({ React, ink }: Ui): () => ReactElement {
  const h = React.createElement;
  const { Box, Text } = ink;
  return function HelpOverlay(): ReactElement {
    return h(
      Box,
      { flexDirection: "column", borderStyle: "round", paddingX: 1 },
      h(Text, { bold: true }, "keys"),
      ...keyHelp.map(([k, what]) => h(Text, { key: k, wrap: "truncate" }, `${k.padEnd(10)} ${what}`)),
      h(Text, { dimColor: true }, "? or Esc closes this help"),
    );
  };
}
