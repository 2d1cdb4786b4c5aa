import { mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { plainWriter, type DataWriter } from "../util/atomic.js";
import { createLogger } from "../util/log.js";
import { ReplayJournal } from "./replay-journal.js";

// What a restart finds: everything committed, whether or not the agent got to write a snapshot.

const log = createLogger({ name: "test", level: "silent" });
const now = Date.parse("2025-01-15T10:30:00Z");
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "plexd-journal-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const journalFile = () => join(dir, "cache", "events.journal");
const rec = (i: number, expiresAt = now + 300_000) => ({ id: `evt_${i}`, nonce: `nonce_${i}`, expiresAt });

describe("ReplayJournal", () => {
  it("keeps what was committed without a flush (a SIGKILL right after dispatch)", async () => {
    const j = await ReplayJournal.open(dir, now, log);
    await j.commit([rec(1), rec(2)]);
    await j.commit([rec(3)]);
    await j.commit([{ id: "oversize_4" }]);
    // A duplicate's nonce alone: refused by it later, and the cursor stays.
    await j.commit([{ nonce: "nonce_dup", expiresAt: now + 300_000 }]);
    // No flush: the process is gone. A new one opens the same files.
    const after = await ReplayJournal.open(dir, now + 1000, log);
    const g = after.guard;
    expect(["nonce_1", "nonce_2", "nonce_3", "nonce_dup"].every((n) => g.nonces.has(n, now + 1000))).toBe(true);
    expect(["evt_1", "evt_2", "evt_3", "oversize_4"].every((id) => g.recent.has(id))).toBe(true);
    expect(g.lastEventId).toBe("oversize_4");
  });

  it("drops a torn last line and what a crash mid-append left behind", async () => {
    const j = await ReplayJournal.open(dir, now, log);
    await j.commit([rec(1)]);
    // What a crash in the middle of the next write leaves: part of a line, then the zeros.
    const at = readFileSync(journalFile()).indexOf(0);
    const fd = openSync(journalFile(), "r+");
    writeSync(fd, '{"i":"evt_2","n":"nonce_2","x":1736937', at);
    closeSync(fd);
    const g = (await ReplayJournal.open(dir, now, log)).guard;
    expect(g.recent.has("evt_1")).toBe(true);
    expect(g.recent.has("evt_2")).toBe(false);
    expect(g.lastEventId).toBe("evt_1");
  });

  it("forgets expired nonces on load but keeps the ids", async () => {
    const j = await ReplayJournal.open(dir, now, log);
    await j.commit([rec(1, now + 1000), rec(2, now + 10_000)]);
    const g = (await ReplayJournal.open(dir, now + 5000, log)).guard;
    expect(g.nonces.has("nonce_1", now + 5000)).toBe(false);
    expect(g.nonces.has("nonce_2", now + 5000)).toBe(true);
    expect(g.recent.has("evt_1")).toBe(true);
  });

  it("writes in place: the journal's size never changes between snapshots", async () => {
    const j = await ReplayJournal.open(dir, now, log);
    await j.commit([rec(1)]);
    const size = statSync(journalFile()).size;
    for (let i = 2; i < 50; i++) await j.commit([rec(i)]);
    expect(statSync(journalFile()).size).toBe(size);
  });

  it("folds the journal into a snapshot as it fills up, and survives a crash between the two writes", async () => {
    const j = await ReplayJournal.open(dir, now, log);
    for (let b = 0; b < 200; b++) {
      const batch = Array.from({ length: 100 }, (_, i) => rec(b * 100 + i));
      // As the verifier does before a commit.
      for (const r of batch) j.guard.nonces.record(r.nonce, r.expiresAt, now);
      await j.commit(batch);
    }
    // 20,000 records of ~50 bytes do not fit in one journal: at least one snapshot was taken since.
    const lines = readFileSync(journalFile(), "utf8").split("\n").filter((l) => l.startsWith("{"));
    expect(lines.length).toBeLessThan(15_000);
    const snapshot = JSON.parse(readFileSync(join(dir, "cache", "events.json"), "utf8")) as { journal_base: string; recent_event_ids: string[] };
    expect(snapshot.recent_event_ids.length).toBeGreaterThan(0);
    // A crash after the new snapshot but before the journal restarted: the old journal names
    // another snapshot and is ignored; the snapshot alone holds everything.
    writeFileSync(journalFile(), JSON.stringify({ snapshot: "older" }) + "\n" + JSON.stringify({ i: "ghost", n: "g", x: now + 1000 }) + "\n");
    const g = (await ReplayJournal.open(dir, now, log)).guard;
    expect(g.recent.has("ghost")).toBe(false);
    expect(g.nonces.size).toBeGreaterThan(0);
  });

  it("batches: one durable write per commit, never interleaved with a snapshot", async () => {
    const calls: string[] = [];
    const writer: DataWriter = {
      ...plainWriter,
      writeFileAtomic: async (p, d, m) => (calls.push(`write ${p.split("/").pop()}`), plainWriter.writeFileAtomic(p, d, m)),
      createAppendLog: async (p, h, c) => {
        calls.push(`create ${p.split("/").pop()}`);
        const log = (await plainWriter.createAppendLog(p, h, c))!;
        return {
          get room() {
            return log.room;
          },
          append: async (d) => (calls.push(`append ${d.split("\n").length - 1}`), log.append(d)),
          close: () => log.close(),
        };
      },
    };
    const j = await ReplayJournal.open(dir, now, log, writer);
    await Promise.all([j.commit([rec(1), rec(2), rec(3)]), j.commit([rec(4)]), j.close(), j.commit([rec(5)])]);
    expect(calls).toEqual(["write events.json", "create events.journal", "append 3", "append 1", "write events.json", "create events.journal", "write events.json", "create events.journal", "append 1"]);
    const g = (await ReplayJournal.open(dir, now, log)).guard;
    expect([1, 2, 3, 4, 5].every((i) => g.recent.has(`evt_${i}`))).toBe(true);
  });

  it("a failed append is reported to its caller and does not stop later commits", async () => {
    let fail = true;
    const writer: DataWriter = {
      ...plainWriter,
      createAppendLog: async (p, h, c) => {
        const log = (await plainWriter.createAppendLog(p, h, c))!;
        return {
          get room() {
            return log.room;
          },
          append: async (d) => {
            if (fail) throw new Error("EIO");
            return log.append(d);
          },
          close: () => log.close(),
        };
      },
    };
    const j = await ReplayJournal.open(dir, now, log, writer);
    await expect(j.commit([rec(1)])).rejects.toThrow("EIO");
    fail = false;
    await j.commit([rec(2)]);
    const g = (await ReplayJournal.open(dir, now, log)).guard;
    expect(g.recent.has("evt_2")).toBe(true);
  });
});
