import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { plainWriter } from "../../util/atomic.js";
import { PositionBook, positionsFile } from "./positions.js";

const dir = mkdtempSync(join(tmpdir(), "plexd-positions-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("PositionBook", () => {
  it("moves a position only when its line's batch commits, persists it 0600, and reads it back", async () => {
    const book = await PositionBook.open(dir, plainWriter, () => 100, (e) => { throw e; });
    book.note(1, "journald", { cursor: "c1" });
    book.note(2, "file:/a", { inode: "1:2", offset: 10, skip: false });
    book.note(3, "journald", { cursor: "c3" });
    expect(book.committed("journald")).toBeUndefined();
    book.commit(2);
    await book.flush();
    expect(book.committed("journald")).toEqual({ cursor: "c1" });
    expect(book.committed("file:/a")).toEqual({ inode: "1:2", offset: 10, skip: false });
    expect(statSync(join(dir, positionsFile)).mode & 0o777).toBe(0o600);
    const again = await PositionBook.open(dir, plainWriter, () => 100, () => undefined);
    expect(again.committed("journald")).toEqual({ cursor: "c1" });
    expect(JSON.parse(readFileSync(join(dir, positionsFile), "utf8"))).toHaveProperty("positions");
  });

  it("keeps notes only for lines the ring can still hold", async () => {
    const book = await PositionBook.open(join(dir, "b"), plainWriter, () => 3, () => undefined);
    for (let s = 1; s <= 10; s++) book.note(s, "k", { cursor: `c${s}` });
    book.commit(5);
    // Lines 1-6 were evicted by the ring (size 3): nothing ≤ 5 is left to commit.
    expect(book.committed("k")).toBeUndefined();
    book.commit(10);
    expect(book.committed("k")).toEqual({ cursor: "c10" });
    await book.flush();
  });

  it("keeps the right position per source while its note ring wraps and grows", async () => {
    const book = await PositionBook.open(join(dir, "c"), plainWriter, () => 5000, () => undefined);
    let seq = 0;
    // Commits lag the notes by up to 3,000 lines, so the ring (1,024 at first) wraps and grows.
    for (let round = 1; round <= 5; round++) {
      for (let k = 0; k < 3000; k++) {
        seq++;
        book.noteFile(seq, seq % 2 === 0 ? "file:/a" : "file:/b", `1:${round}`, seq * 10, false);
      }
      book.commit(seq - 1500);
      const last = seq - 1500;
      const [evenLast, oddLast] = last % 2 === 0 ? [last, last - 1] : [last - 1, last];
      expect(book.committed("file:/a")).toEqual({ inode: `1:${round}`, offset: evenLast * 10, skip: false });
      expect(book.committed("file:/b")).toEqual({ inode: `1:${round}`, offset: oddLast * 10, skip: false });
    }
    await book.flush();
  });
});
