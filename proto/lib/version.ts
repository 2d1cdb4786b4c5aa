// What build this is: the one version string of every process (docs/architecture.md#dependency-direction).
// The bundler stamps version, commit and build date into every bundle (scripts/bundle.mjs), so
// no bundle carries package.json itself; unbundled code (unit tests) reads the version from
// package.json and says "dev" for the rest.
import { readFileSync } from "node:fs";

const packageVersion = (): string => (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;

export interface BuildInfo {
  version: string;
  commit: string;
  buildDate: string;
}

export const buildInfo: Readonly<BuildInfo> = Object.freeze({
  version: process.env.PLEXD_VERSION ?? packageVersion(),
  commit: process.env.PLEXD_COMMIT ?? "dev",
  buildDate: process.env.PLEXD_BUILD_DATE ?? "dev",
});

export const version: string = buildInfo.version;

/** `NAME VERSION (commit C, built D)`, what every `--version` prints (docs/operations.md). */
export function versionLine(program: string): string {
  return `${program} ${buildInfo.version} (commit ${buildInfo.commit}, built ${buildInfo.buildDate})`;
}
