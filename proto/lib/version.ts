// What build this is: the one version string of every process (docs/architecture.md#dependency-direction). The version
// comes from package.json, the commit and build date from the bundler (scripts/build.mjs
// stamps them into every bundle); unbundled code (unit tests) says "dev".
import pkg from "../../package.json" with { type: "json" };

export interface BuildInfo {
  version: string;
  commit: string;
  buildDate: string;
}

export const buildInfo: Readonly<BuildInfo> = Object.freeze({
  version: pkg.version,
  commit: process.env.PLEXD_COMMIT ?? "dev",
  buildDate: process.env.PLEXD_BUILD_DATE ?? "dev",
});

export const version: string = buildInfo.version;

/** `NAME VERSION (commit C, built D)`, what every `--version` prints (docs/operations.md). */
export function versionLine(program: string): string {
  return `${program} ${buildInfo.version} (commit ${buildInfo.commit}, built ${buildInfo.buildDate})`;
}
