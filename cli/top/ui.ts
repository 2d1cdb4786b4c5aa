import type * as InkModule from "ink";
import type * as ReactModule from "react";

// Ink and React are imported only at run time. A static import anywhere under cli/ would be
// hoisted by the bundler into dist/plexd.js and loaded by every command (~0.7 s), so the
// components receive the two libraries as this value instead.

export interface Ui {
  React: typeof ReactModule;
  ink: typeof InkModule;
}

/**
 * `plexd top` runs only on a terminal (it refuses otherwise), so the terminal decides about
 * colour, not the job around it. Both Ink (which renders only the last frame in "CI") and the
 * colour detection it uses (level 0 whenever a CI variable exists) read the environment once
 * at import; CI markers describe the job, so they go. NO_COLOR (no-color.org: set and not
 * empty) turns colour off unless FORCE_COLOR says otherwise explicitly.
 */
export function prepareTerminalEnv(env: NodeJS.ProcessEnv): void {
  for (const k of Object.keys(env)) if (k === "CI" || k === "CONTINUOUS_INTEGRATION" || k.startsWith("CI_")) delete env[k];
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "" && env.FORCE_COLOR === undefined) env.FORCE_COLOR = "0";
}

export async function loadUi(): Promise<Ui> {
  prepareTerminalEnv(process.env);
  const [React, ink] = await Promise.all([import("react"), import("ink")]);
  return { React: (React as unknown as { default?: typeof ReactModule }).default ?? React, ink };
}
