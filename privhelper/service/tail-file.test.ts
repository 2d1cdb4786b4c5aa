import { chmodSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { TailFileRequestSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { privConfigFrom } from "../config.js";
import { makeTailFile } from "./tail-file.js";

const dir = mkdtempSync(join(tmpdir(), "plexd-tailfile-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const secret = join(dir, "secret.log");
writeFileSync(secret, "one\ntwo\n", { mode: 0o600 });
writeFileSync(join(dir, "other.txt"), "no\n", { mode: 0o600 });
const tail = makeTailFile({ config: privConfigFrom({ logs: { tail_files: [join(dir, "*.log")] } }) });
const read = (path: string, offset = 0, maxBytes = 1024) => tail(create(TailFileRequestSchema, { path, offset: BigInt(offset), maxBytes }));

describe("TailFile", () => {
  it("reads a chunk of an allow-listed file from an offset, with its inode and size", async () => {
    const r = await read(secret, 4, 2);
    expect(Buffer.from(r.data!).toString()).toBe("tw");
    expect(r.size).toBe(8n);
    expect(r.inode).toMatch(/^\d+:\d+$/);
    expect((await read(secret, 8)).data).toHaveLength(0);
    expect((await read(secret, 100)).data).toHaveLength(0);
  });

  it("a renamed file answers with a new inode under the same path", async () => {
    const before = (await read(secret)).inode;
    renameSync(secret, secret + ".1");
    writeFileSync(secret, "new\n", { mode: 0o600 });
    const after = await read(secret);
    expect(after.inode).not.toBe(before);
    expect(after.size).toBe(4n);
  });

  it("refuses files outside the allow-list, missing files, symlinks and bad arguments, saying why", async () => {
    await expect(read(join(dir, "other.txt"))).rejects.toMatchObject({ code: "permission_denied", message: expect.stringContaining("logs.tail_files") });
    await expect(read("/etc/shadow")).rejects.toMatchObject({ code: "permission_denied" });
    await expect(read(join(dir, "missing.log"))).rejects.toMatchObject({ code: "permission_denied" });
    symlinkSync("/etc/shadow", join(dir, "link.log"));
    await expect(read(join(dir, "link.log"))).rejects.toMatchObject({ code: "permission_denied" });
    await expect(read("relative.log")).rejects.toMatchObject({ code: "invalid_argument" });
    await expect(read(`${dir}/../x.log`)).rejects.toMatchObject({ code: "invalid_argument" });
    await expect(read(secret, 0, 0)).rejects.toMatchObject({ code: "invalid_argument" });
    await expect(read(secret, 0, 2 * 1024 * 1024)).rejects.toMatchObject({ code: "invalid_argument" });
    chmodSync(dir, 0o700);
  });

  it("serves nothing when logs.tail_files is empty", async () => {
    const none = makeTailFile({ config: privConfigFrom({}) });
    await expect(none(create(TailFileRequestSchema, { path: secret, maxBytes: 10 }))).rejects.toMatchObject({ code: "permission_denied", message: expect.stringContaining("lists no files") });
  });

  it("a bad logs.tail_files entry is a config error naming its index", () => {
    expect(() => privConfigFrom({ logs: { tail_files: ["/ok/*.log", "rel/*.log", 3] } })).toThrow(/logs\.tail_files\[1\][\s\S]*logs\.tail_files\[2\]/);
    expect(() => privConfigFrom({ logs: { tail_files: "/x" } })).toThrow(/logs\.tail_files: must be a list/);
  });
});
