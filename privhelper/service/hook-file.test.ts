import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { HashFilesRequestSchema, HashFilesResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { privConfigFrom } from "../config.js";
import { makeHashFiles } from "./hook-file.js";

// Runs as root (as privhelper does): files made here are root-owned unless chowned.
const root = mkdtempSync(join(tmpdir(), "plexd-hookfile-"));
chmodSync(root, 0o755);
afterAll(() => rmSync(root, { recursive: true, force: true }));
const dir = join(root, "hooks.d");
mkdirSync(dir, { mode: 0o755 });
const file = (name: string, mode = 0o755, content = "#!/bin/sh\necho hi\n") => {
  const p = join(dir, name);
  writeFileSync(p, content);
  chmodSync(p, mode);
  return p;
};
const hash = makeHashFiles({ config: privConfigFrom({ hooks: { dir } }) });
const check = async (...paths: string[]) => create(HashFilesResponseSchema, await hash(create(HashFilesRequestSchema, { paths }))).files;

describe("HashFiles", () => {
  it("hashes a root-owned, executable file inside hooks.dir", async () => {
    const [f] = await check(file("ok.sh"));
    expect(f).toMatchObject({ problem: "", checksum: "sha256:" + (await import("node:crypto")).createHash("sha256").update("#!/bin/sh\necho hi\n").digest("hex") });
  });

  it("names the problem of every file that may not run, and hashes none of them", async () => {
    const outside = join(root, "outside.sh");
    writeFileSync(outside, "#!/bin/sh\n", { mode: 0o755 });
    symlinkSync(outside, join(dir, "escape.sh"));
    symlinkSync(join(dir, "ok2.sh"), join(dir, "inside-link.sh"));
    file("ok2.sh");
    const foreign = file("foreign.sh");
    chownSync(foreign, 65534, 65534);
    mkdirSync(join(dir, "subdir"));
    const files = await check(join(dir, "escape.sh"), file("gw.sh", 0o775), file("noexec.sh", 0o644), foreign, join(dir, "missing.sh"), join(dir, "subdir"), join(dir, "inside-link.sh"));
    expect(files.map((f) => [f.problem.replaceAll(root, "ROOT"), f.checksum === ""])).toEqual([
      [`resolves to ROOT/outside.sh, outside hooks.dir ${dir.replace(root, "ROOT")}`, true],
      ["file is writable by group or others", true],
      ["not executable by its owner", true],
      ["file is not owned by root", true],
      ["file does not exist", true],
      ["not a regular file", true],
      ["", false],
    ]);
  });

  it("refuses relative paths outright", async () => {
    await expect(check("relative.sh")).rejects.toThrow(/absolute/);
  });
});
