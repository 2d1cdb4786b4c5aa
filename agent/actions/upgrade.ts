import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { PlexdError } from "../../proto/lib/errors.js";
import { checksumPattern, releaseArch, releaseName, upgradeDirName, versionPattern } from "../../proto/lib/install/name.js";
import { version as runningVersion } from "../../proto/lib/version.js";
import type { CpClient } from "../controlplane/http.js";
import type { PrivClient } from "../privclient/client.js";
import type { Builtin } from "./builtins.js";
import { downloadVerified } from "./download.js";

// service.upgrade (docs/actions.md "Upgrades"): download the release from the control plane
// into data_dir/upgrade/, check its SHA-256 against the request, have privhelper install it
// (InstallUpgrade, which checks it again and installs plexd install's release layout), and
// restart both units once the result is delivered. Where the units cannot be restarted (no
// systemd as init) the release stays installed and the status is `error`, saying so.

export interface UpgradeDeps {
  cp: CpClient;
  priv: PrivClient;
  dataDir: string;
  connectTimeoutMs: number;
  identity(): { nodeId: string; token: string };
}

/** Downloads, verifies and installs `version`; the download is removed whatever happens. */
export async function installRelease(d: UpgradeDeps, version: string, checksum: string, signal: AbortSignal): Promise<{ libDir: string; changes: number }> {
  const arch = releaseArch();
  if (arch === undefined) throw new PlexdError("failed_precondition", `no plexd releases for architecture ${process.arch}`);
  const dir = join(d.dataDir, upgradeDirName);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const dest = join(dir, `${releaseName(version, arch)}.tar.gz`);
  try {
    await downloadVerified({ cp: d.cp, path: `/v1/artifacts/plexd/${encodeURIComponent(version)}/linux/${arch}`, token: d.identity().token, dest, checksum, connectTimeoutMs: d.connectTimeoutMs, signal });
    return await d.priv.installUpgrade({ version, checksum }, { timeoutMs: 300_000, signal });
  } finally {
    await rm(dest, { force: true });
  }
}

/**
 * After an install: the file this agent was started from may be the one just replaced. Its
 * checksum is what registration, heartbeats and capability updates carry, so a change is
 * taken over and announced at once rather than at the next restart.
 */
export async function artifactChanged(d: { current: () => string; hash: () => Promise<string>; set: (checksum: string) => void; announce: () => void }): Promise<boolean> {
  const now = await d.hash().catch(() => undefined);
  if (now === undefined || now === d.current()) return false;
  d.set(now);
  d.announce();
  return true;
}

/** The checksum as privhelper takes it: `sha256:` and lower-case hex (a bare hex digest is accepted). */
const normalChecksum = (c: string): string => (c.startsWith("sha256:") ? c : `sha256:${c}`).toLowerCase();

export const serviceUpgrade: Builtin = {
  name: "service.upgrade",
  type: "builtin",
  description: "Download plexd VERSION from the control plane, check its SHA-256, install it, and restart both units once this result is delivered",
  parameters: [
    { name: "version", type: "string", required: true, description: "the release to install, e.g. 1.5.0", pattern: { re: versionPattern, message: "must be a release version such as 1.5.0" } },
    { name: "checksum", type: "string", required: true, description: "sha256:<hex> of the release tarball", pattern: { re: /^(?:sha256:)?[0-9a-fA-F]{64}$/, message: "must be sha256: and 64 hex digits" } },
  ],
  async run(params, host, signal) {
    const to = params.version!;
    const checksum = normalChecksum(params.checksum!);
    if (!checksumPattern.test(checksum)) throw new PlexdError("invalid_argument", "checksum: must be sha256: and 64 hex digits");
    const installed = await host.upgrade(to, checksum, signal);
    const document = { from: runningVersion, to, checksum };
    try {
      await host.serviceControl("restart_all", true);
    } catch (err) {
      const why = PlexdError.from(err).message;
      return { exitCode: -1, document, error: `plexd ${to} is installed in ${installed.libDir}, but it cannot be started from here: ${why}. Restart plexd-privhelper.service and plexd.service to run it.` };
    }
    return { exitCode: 0, document, after: () => host.serviceControl("restart_all", false) };
  },
};
