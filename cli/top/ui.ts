import type * as InkModule from "ink";
import type * as ReactModule from "react";

// Ink and React are imported only at run time. A static import anywhere under cli/ would be
// hoisted by the bundler into dist/plexd.js and loaded by every command (~0.7 s), so the
// components receive the two libraries as this value instead.

export interface Ui {
  React: typeof ReactModule;
  ink: typeof InkModule;
}

export async function loadUi(): Promise<Ui> {
  // Ink renders only the last frame when it thinks it runs in CI (env CI / CONTINUOUS_INTEGRATION,
  // read once at import). `plexd top` only ever runs on a terminal, so a CI-flagged shell
  // must still get a live screen.
  process.env.CI = "false";
  process.env.CONTINUOUS_INTEGRATION = "false";
  const [React, ink] = await Promise.all([import("react"), import("ink")]);
  return { React: (React as unknown as { default?: typeof ReactModule }).default ?? React, ink };
}
