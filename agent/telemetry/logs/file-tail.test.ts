import { appendFileSync, mkdtempSync, renameSync, rmSync, truncateSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { directAccess } from "./file-access.js";
import { FileTail } from "./file-tail.js";
import type { FilePosition } from "./positions.js";

const dir = mkdtempSync(join(tmpdir(), "plexd-filetail-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

function tailer(content: string, opts: { startAtEnd?: boolean; resume?: FilePosition; max?: number } = {}) {
  const path = join(dir, `f${++n}.log`);
  writeFileSync(path, content);
  const lines: string[] = [];
  const positions: FilePosition[] = [];
  const tail = new FileTail(path, directAccess, { line: (m, inode, offset, skip) => (lines.push(m), positions.push({ inode, offset, skip })) }, () => opts.max ?? 256, { resume: opts.resume, startAtEnd: opts.startAtEnd ?? false });
  return { path, lines, positions, tail };
}

describe("FileTail", () => {
  it("reads complete lines only; a partial line waits for its newline", async () => {
    const t = tailer("a\nb\npart");
    await t.tail.poll();
    expect(t.lines).toEqual(["a", "b"]);
    appendFileSync(t.path, "ial\nc\n");
    await t.tail.poll();
    expect(t.lines).toEqual(["a", "b", "partial", "c"]);
    expect(t.positions.at(-1)!.offset).toBe(14);
  });

  it("starts at the end when told to, and resumes from a committed position of the same inode", async () => {
    const t = tailer("old\n", { startAtEnd: true });
    await t.tail.poll();
    appendFileSync(t.path, "new\n");
    await t.tail.poll();
    expect(t.lines).toEqual(["new"]);
    const again = new FileTail(t.path, directAccess, { line: (m) => t.lines.push(m) }, () => 256, { resume: t.positions[0]!, startAtEnd: true });
    appendFileSync(t.path, "after\n");
    await again.poll();
    expect(t.lines).toEqual(["new", "after"]);
    await again.close();
    await t.tail.close();
  });

  it("rotation: the old file is read to its end (last line without newline too), then the new one from 0", async () => {
    const t = tailer("1\n");
    await t.tail.poll();
    appendFileSync(t.path, "2\n3");
    renameSync(t.path, t.path + ".1");
    writeFileSync(t.path, "4\n");
    await t.tail.poll();
    expect(t.lines).toEqual(["1", "2", "3", "4"]);
    await t.tail.close();
  });

  it("truncation: a size below the offset reads the file again from 0", async () => {
    const t = tailer("aaaa\nbbbb\n");
    await t.tail.poll();
    truncateSync(t.path, 0);
    appendFileSync(t.path, "c\n");
    await t.tail.poll();
    expect(t.lines).toEqual(["aaaa", "bbbb", "c"]);
    await t.tail.close();
  });

  it("a file deleted mid-read is read to its end, then waited for; a new one is read from 0", async () => {
    const t = tailer("x\n");
    await t.tail.poll();
    appendFileSync(t.path, "y\n");
    unlinkSync(t.path);
    await t.tail.poll();
    expect(t.lines).toEqual(["x", "y"]);
    expect(t.tail.state).toBe("missing");
    await t.tail.poll();
    writeFileSync(t.path, "z\n");
    await t.tail.poll();
    expect(t.lines).toEqual(["x", "y", "z"]);
    await t.tail.close();
  });

  it("an oversize line is cut with [truncated] and its rest skipped; a 10 MB line keeps memory bounded", async () => {
    const big = "é".repeat(5 * 1024 * 1024); // 10 MB of 2-byte characters, no newline yet
    const t = tailer(big, { max: 300 });
    const before = process.memoryUsage().rss;
    await t.tail.poll();
    appendFileSync(t.path, "tail-of-big\nnext\n");
    await t.tail.poll();
    expect(t.lines).toHaveLength(2);
    expect(t.lines[0]!.endsWith("[truncated]")).toBe(true);
    expect(Buffer.byteLength(t.lines[0]!)).toBeLessThanOrEqual(300);
    expect(t.lines[0]!.startsWith("éé")).toBe(true);
    expect(t.lines[0]).not.toContain("\uFFFD");
    expect(t.lines[1]).toBe("next");
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024);
    await t.tail.close();
  });

  it("a cut line persisted mid-skip resumes by skipping to the next newline", async () => {
    const t = tailer("x".repeat(1000), { max: 300 });
    await t.tail.poll();
    const pos = t.positions[0]!;
    expect(pos.skip).toBe(true);
    appendFileSync(t.path, "yyy\nok\n");
    const again = new FileTail(t.path, directAccess, { line: (m) => t.lines.push(m) }, () => 300, { resume: pos, startAtEnd: true });
    await again.poll();
    expect(t.lines.slice(1)).toEqual(["ok"]);
    await again.close();
    await t.tail.close();
  });

  it("invalid UTF-8 is decoded with replacement characters", async () => {
    const t = tailer("");
    appendFileSync(t.path, Buffer.from([0x61, 0xff, 0xfe, 0x62, 0x0a]));
    await t.tail.poll();
    expect(t.lines).toEqual(["a\uFFFD\uFFFDb"]);
    await t.tail.close();
  });
});
