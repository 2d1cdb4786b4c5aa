import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { InstallUpgradeRequestSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { releaseArch, releaseName } from "../../proto/lib/install/name.js";
import { privConfigFrom } from "../config.js";
import { createLogger } from "../log.js";
import { processRunner } from "../os/run.js";
import { makeInstallUpgrade } from "./install-upgrade.js";

// Runs as root, as privhelper does, on real tarballs made with tar: the release layout lands
// under actions.upgrade_root, and every refusal leaves that root untouched.

const base = mkdtempSync(join(tmpdir(), "plexd-upgrade-test-"));
afterAll(() => rmSync(base, { recursive: true, force: true }));
const dataDir = join(base, "data");
const target = join(base, "root");
mkdirSync(join(dataDir, "upgrade"), { recursive: true, mode: 0o700 });
mkdirSync(target);
const arch = releaseArch()!;
const sha = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");
const install = makeInstallUpgrade({ config: privConfigFrom({ data_dir: dataDir, actions: { upgrade_root: target } }), runner: processRunner, log: createLogger("silent") });
const call = (version: string, checksum: string) => install(create(InstallUpgradeRequestSchema, { version, checksum }));

/** A release tarball of `version` in data_dir/upgrade; `tweak` may spoil the unpacked tree first. Returns its checksum. */
function tarball(version: string, files: Record<string, string>, tweak?: (lib: string) => void): string {
  const name = releaseName(version, arch);
  const stage = mkdtempSync(join(base, "stage-"));
  const lib = join(stage, name, "lib", "plexd");
  const all = { "systemd/plexd.service": "[Unit]\n", "systemd/plexd-privhelper.service": "[Unit]\n", "doc/index.md": "# plexd\n", ...files };
  for (const [rel, content] of Object.entries(all)) {
    mkdirSync(join(lib, rel, ".."), { recursive: true });
    writeFileSync(join(lib, rel), content);
    if (rel.endsWith(".js")) chmodSync(join(lib, rel), 0o755);
  }
  writeFileSync(join(lib, "SHA256SUMS"), Object.keys(all).sort().map((rel) => `${sha(readFileSync(join(lib, rel)))}  ${rel}\n`).join(""));
  tweak?.(lib);
  const out = join(dataDir, "upgrade", `${name}.tar.gz`);
  execFileSync("tar", ["-czf", out, "-C", stage, name]);
  return `sha256:${sha(readFileSync(out))}`;
}

const bundles = { "plexd.js": "// cli 1\n", "plexd-agent.js": "// agent 1\n", "plexd-privhelper.js": "// priv 1\n", "plexd-mockcp.js": "// mockcp 1\n" };

describe("InstallUpgrade", () => {
  it("installs the release layout under actions.upgrade_root, then replaces it whole on the next version", async () => {
    const r = await call("1.5.0", tarball("1.5.0", { ...bundles, "old-only.js": "// gone next time\n" }));
    expect(r.libDir).toBe(join(target, "usr/local/lib/plexd"));
    expect(readFileSync(join(target, "usr/local/lib/plexd/plexd-agent.js"), "utf8")).toBe("// agent 1\n");
    expect(lstatSync(join(target, "usr/local/lib/plexd/plexd-agent.js")).mode & 0o777).toBe(0o755);
    expect(lstatSync(join(target, "usr/local/lib/plexd/doc/index.md")).mode & 0o777).toBe(0o644);
    expect(readlinkSync(join(target, "usr/local/bin/plexd-agent"))).toBe("../lib/plexd/plexd-agent.js");
    expect(existsSync(join(target, "etc/systemd/system/plexd.service"))).toBe(true);
    expect(existsSync(join(target, "usr/local/share/doc/plexd/index.md"))).toBe(true);
    // Nothing but the release: no configuration, no state.
    expect(existsSync(join(target, "etc/plexd"))).toBe(false);

    const again = await call("1.5.0", tarball("1.5.0", { ...bundles, "old-only.js": "// gone next time\n" }));
    expect(again.changes).toBe(0);

    await call("1.6.0", tarball("1.6.0", { ...bundles, "plexd-agent.js": "// agent 2\n" }));
    expect(readFileSync(join(target, "usr/local/lib/plexd/plexd-agent.js"), "utf8")).toBe("// agent 2\n");
    expect(existsSync(join(target, "usr/local/lib/plexd/old-only.js"))).toBe(false);
  });

  const before = () => readFileSync(join(target, "usr/local/lib/plexd/SHA256SUMS"), "utf8");

  it("refuses a tarball whose checksum is not the one asked for, and installs nothing", async () => {
    const sums = before();
    const good = tarball("1.7.0", { ...bundles, "plexd-agent.js": "// agent 3\n" });
    await expect(call("1.7.0", `sha256:${"0".repeat(64)}`)).rejects.toMatchObject({ code: "failed_precondition", message: expect.stringMatching(/checksum sha256:[0-9a-f]{64}, expected sha256:0{64}; nothing installed/) });
    expect(before()).toBe(sums);
    expect(good).toMatch(/^sha256:/);
  });

  it("refuses a release whose files do not match its SHA256SUMS, or that holds links", async () => {
    const sums = before();
    const altered = tarball("1.8.0", bundles, (lib) => writeFileSync(join(lib, "plexd-agent.js"), "// altered\n"));
    await expect(call("1.8.0", altered)).rejects.toThrow(/damaged:\n\s+.*plexd-agent\.js: SHA-256 does not match SHA256SUMS/);
    const linked = tarball("1.8.1", bundles, (lib) => symlinkSync("/etc/shadow", join(lib, "shadow.js")));
    await expect(call("1.8.1", linked)).rejects.toThrow(/holds links or special files: shadow\.js/);
    expect(before()).toBe(sums);
  });

  it("takes only a version and a checksum, never a path: bad values are listed, a missing download named", async () => {
    await expect(call("../../etc", "sha256:xyz")).rejects.toMatchObject({ code: "invalid_argument", message: expect.stringMatching(/version: "..\/..\/etc" is not a release version.*\n\s+checksum: must be sha256:/s) });
    await expect(call("9.9.9", `sha256:${"a".repeat(64)}`)).rejects.toThrow(new RegExp(`upgrade/plexd-9\\.9\\.9-linux-${arch}\\.tar\\.gz: cannot open \\(ENOENT\\)`));
    symlinkSync(join(base, "elsewhere.tar.gz"), join(dataDir, "upgrade", `${releaseName("9.9.8", arch)}.tar.gz`));
    await expect(call("9.9.8", `sha256:${"a".repeat(64)}`)).rejects.toThrow(/cannot open \(ELOOP\)/);
  });

  it("refuses a tarball without the release directory of its version", async () => {
    const name = releaseName("2.0.0", arch);
    const stage = mkdtempSync(join(base, "stage-"));
    mkdirSync(join(stage, "something-else"));
    writeFileSync(join(stage, "something-else", "x"), "x");
    const out = join(dataDir, "upgrade", `${name}.tar.gz`);
    execFileSync("tar", ["-czf", out, "-C", stage, "something-else"]);
    await expect(call("2.0.0", `sha256:${sha(readFileSync(out))}`)).rejects.toThrow(new RegExp(`no ${name}/lib/plexd in it`));
  });
});
