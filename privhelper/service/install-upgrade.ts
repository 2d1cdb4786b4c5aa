// InstallUpgrade (service.upgrade): installs a release the agent downloaded and checked. What
// is accepted is fixed here, not by the caller: the file is <data_dir>/upgrade/<release>.tar.gz
// named by the version, read once through one descriptor and hashed again here; the unpacked
// lib directory must hold only regular files and directories, each matching its SHA256SUMS;
// and the target is actions.upgrade_root from the root-owned configuration. Installing is
// `plexd install`'s own code (proto/lib/install): only the release part, configuration and
// state stay as they are.
import { createHash } from "node:crypto";
import { constants, lstatSync } from "node:fs";
import { mkdir, mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { InstallUpgradeRequest, InstallUpgradeResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import { readArtifact } from "../../proto/lib/install/artifact.js";
import { releaseLayout, releasePaths, under, walk } from "../../proto/lib/install/layout.js";
import { checksumPattern, releaseArch, releaseName, upgradeDirName, versionPattern } from "../../proto/lib/install/name.js";
import { apply, plan } from "../../proto/lib/install/tree.js";
import type { PrivConfig } from "../config.js";
import type { Logger } from "../log.js";
import type { Runner } from "../os/run.js";

/** A release tarball is a few MB; this bounds what is read into memory. */
const maxTarballBytes = 256 * 1024 * 1024;

const refuse = (problem: string) => new PlexdError("failed_precondition", problem);

/** The whole file, from one descriptor that is a regular file (no link followed). */
async function readRegular(path: string): Promise<Buffer> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch((err: NodeJS.ErrnoException) => {
    throw refuse(`${path}: cannot open (${err.code ?? err.message}); service.upgrade downloads it there first`);
  });
  try {
    const s = await fh.stat();
    if (!s.isFile()) throw refuse(`${path}: not a regular file`);
    if (s.size > maxTarballBytes) throw refuse(`${path}: ${s.size} bytes, more than a release can be (${maxTarballBytes})`);
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

export function makeInstallUpgrade(deps: { config: PrivConfig; runner: Runner; log: Logger }) {
  let busy = false;
  return async (req: InstallUpgradeRequest): Promise<MessageInitShape<typeof InstallUpgradeResponseSchema>> => {
    const problems = [
      ...(versionPattern.test(req.version) ? [] : [`version: ${JSON.stringify(req.version.slice(0, 80))} is not a release version such as 1.5.0`]),
      ...(checksumPattern.test(req.checksum) ? [] : ["checksum: must be sha256: and 64 lower-case hex digits"]),
    ];
    if (problems.length > 0) throw new PlexdError("invalid_argument", `invalid request:\n  ${problems.join("\n  ")}`);
    const arch = releaseArch();
    if (arch === undefined) throw refuse(`no plexd releases for architecture ${process.arch}`);
    if (busy) throw new PlexdError("aborted", "another upgrade is being installed");
    busy = true;
    const name = releaseName(req.version, arch);
    const file = join(deps.config.dataDir, upgradeDirName, `${name}.tar.gz`);
    let tmp: string | undefined;
    try {
      tmp = await mkdtemp(join(tmpdir(), "plexd-upgrade-"));
      const bytes = await readRegular(file);
      const actual = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
      if (actual !== req.checksum) throw refuse(`${file}: checksum ${actual}, expected ${req.checksum}; nothing installed`);
      // The verified bytes, in privhelper's own directory: the agent's file may change meanwhile.
      await writeFile(join(tmp, "release.tar.gz"), bytes, { mode: 0o600 });
      await mkdir(join(tmp, "x"), { mode: 0o700 });
      await deps.runner.run("tar", ["-xzf", join(tmp, "release.tar.gz"), "-C", join(tmp, "x"), "--no-same-owner"], { timeoutMs: 120_000 });
      const lib = join(tmp, "x", name, "lib", "plexd");
      const entries = walk(lib);
      const odd = entries.filter((rel) => {
        const s = lstatSync(join(lib, rel));
        return !s.isFile() && !s.isDirectory();
      });
      if (entries.length === 0) throw refuse(`${name}.tar.gz: no ${name}/lib/plexd in it (not a plexd ${req.version} release for ${arch})`);
      if (odd.length > 0) throw refuse(`${name}.tar.gz: lib/plexd holds links or special files: ${odd.slice(0, 5).join(", ")}`);
      const { artifact, problems: bad } = readArtifact(lib);
      if (artifact === undefined) throw refuse(`${name}.tar.gz is damaged:\n  ${bad.join("\n  ")}`);
      const root = deps.config.upgradeRoot;
      const libDir = under(root, releasePaths.lib);
      const actions = plan(releaseLayout({ root, artifact, libNow: walk(libDir), owner: { uid: 0, gid: 0 } }));
      apply(actions);
      deps.log.info({ version: req.version, checksum: req.checksum, lib_dir: libDir, changes: actions.length }, "release installed");
      return { libDir, changes: actions.length };
    } finally {
      busy = false;
      if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
    }
  };
}
