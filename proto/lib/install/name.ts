// How a release is named: service.upgrade (agent) downloads it under this name and privhelper
// InstallUpgrade opens it by the same name, so the name is derived, never sent as a path.

/** A release version such as 1.5.0 or 1.5.0-rc.1. */
export const versionPattern = /^\d{1,9}\.\d{1,9}\.\d{1,9}(?:-[0-9A-Za-z][0-9A-Za-z.]{0,63})?$/;
/** A checksum as the control plane writes it. */
export const checksumPattern = /^sha256:[0-9a-f]{64}$/;

/** Release architecture of a Node.js `process.arch` (x64 is amd64), or undefined when there is none. */
export function releaseArch(arch: string = process.arch): "amd64" | "arm64" | undefined {
  return arch === "x64" ? "amd64" : arch === "arm64" ? "arm64" : undefined;
}

/** The tarball's top directory; the file is `<name>.tar.gz`. */
export const releaseName = (version: string, arch: string): string => `plexd-${version}-linux-${arch}`;

/** Where service.upgrade leaves a verified download for InstallUpgrade, inside data_dir. */
export const upgradeDirName = "upgrade";
