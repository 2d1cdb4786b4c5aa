import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { PlexdError } from "../../proto/lib/errors.js";
import { plainWriter, type AppendLog, type DataWriter } from "../util/atomic.js";
import { parseJsonLine } from "../util/json-line.js";
import type { Logger } from "../util/log.js";
import { ReplayGuard } from "./replay.js";

// Crash-safe replay protection (docs/decisions.md#replay-protection-across-crashes): an event's id and nonce are on disk before its
// handler runs, so a captured event replayed after a restart is refused also when the agent was
// killed (SIGKILL, power loss) a moment after handling it. Two files under data_dir/cache:
//
//   events.json     the bookkeeping as a whole (nonces, recent ids, Last-Event-ID), written
//                   atomically from time to time, tagged with a random id;
//   events.journal  its first line names that id; then one line per event handled since,
//                   written durably (O_DSYNC) before the events are dispatched. The file is
//                   created zero-filled at its full size and written in place
//                   (util/atomic.ts createAppendLog), so a durable write costs no metadata.
//
// The events that arrive together (one network read) share one write, so the cost of
// durability is spread over them. When the journal is full, a new snapshot is written, with a
// new id, before a new journal replaces the old one: a crash in between leaves a journal that
// names an older snapshot, which is ignored — everything in it is in the new snapshot. Reading
// stops at the first line that does not parse: the zeros not yet written, or a line torn by a
// crash mid-write, which belongs to events that were never dispatched.
//
// Handled means at most once: an event whose handler a crash interrupted is not handled again
// after the restart. What it would have changed arrives with the state pull that follows every
// connect (level-triggered reconciliation, docs/architecture.md#inside-the-agent).

export interface JournalRecord {
  /**
   * The event id (the SSE id of an oversize event that was skipped); absent for a duplicate,
   * whose nonce alone is recorded (its id is known already and must not move the cursor).
   */
  id?: string;
  nonce?: string;
  /** When the nonce may be forgotten (issued_at + 300 s), ms since the epoch. */
  expiresAt?: number;
}

interface Line {
  i?: string;
  n?: string;
  x?: number;
}

/** Journal size: some 5,000 events of ordinary ids and nonces before it is folded into a snapshot. */
const journalBytes = 512 * 1024;

export class ReplayJournal {
  readonly #snapshot: string;
  readonly #journal: string;
  readonly #writer: DataWriter;
  readonly #guard: ReplayGuard;
  /** The journal being written, from the last snapshot on; undefined until the first commit. */
  #log: AppendLog | undefined;
  /** Every write, in order: appends and compactions never interleave. */
  #chain: Promise<void> = Promise.resolve();

  private constructor(dataDir: string, writer: DataWriter, guard: ReplayGuard) {
    this.#snapshot = join(dataDir, "cache", "events.json");
    this.#journal = join(dataDir, "cache", "events.journal");
    this.#writer = writer;
    this.#guard = guard;
  }

  get guard(): ReplayGuard {
    return this.#guard;
  }

  /** Loads the snapshot and replays the journal into it; unreadable bookkeeping starts empty (logged). */
  static async open(dataDir: string, now: number, log: Logger, writer: DataWriter = plainWriter): Promise<ReplayJournal> {
    const snapshotPath = join(dataDir, "cache", "events.json");
    let guard = new ReplayGuard();
    let base = "";
    try {
      const json = JSON.parse(await readFile(snapshotPath, "utf8")) as Record<string, unknown>;
      const { journal_base: id, ...rest } = json;
      guard = ReplayGuard.fromJSON(rest, now);
      base = typeof id === "string" ? id : "";
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") log.warn({ err: PlexdError.from(err).message }, "event-stream bookkeeping unreadable; starting empty");
    }
    const j = new ReplayJournal(dataDir, writer, guard);
    const text = await readFile(j.#journal, "utf8").catch(() => "");
    const lines = text.split("\n");
    const header = parseJsonLine<{ snapshot?: unknown }>(lines[0] ?? "");
    if (base !== "" && header?.snapshot === base) {
      for (const raw of lines.slice(1)) {
        const l = parseJsonLine<Line>(raw);
        if (l === undefined || (typeof l.i !== "string" && typeof l.n !== "string")) break; // the zeros not yet written, or a torn line
        j.#apply(l, now);
      }
    }
    // The first commit starts a new snapshot and journal from what was loaded.
    return j;
  }

  #apply(l: Line, now: number): void {
    if (typeof l.n === "string" && typeof l.x === "number" && l.x >= now) this.#guard.nonces.record(l.n, l.x, now);
    if (typeof l.i !== "string") return;
    this.#guard.recent.add(l.i);
    this.#guard.lastEventId = l.i;
  }

  /**
   * Makes `records` durable: resolves once they are appended and synced, after which their
   * events may be dispatched. Rejects if they could not be written.
   */
  commit(records: readonly JournalRecord[]): Promise<void> {
    if (records.length === 0) return this.#chain;
    const text = records.map((r) => JSON.stringify({ ...(r.id === undefined ? {} : { i: r.id }), ...(r.nonce === undefined ? {} : { n: r.nonce, x: r.expiresAt }) } satisfies Line)).join("\n") + "\n";
    const bytes = Buffer.byteLength(text);
    const run = this.#chain.then(async () => {
      if (this.#log === undefined || this.#log.room < bytes) await this.#compact(Math.max(journalBytes, 2 * bytes));
      // No journal when data_dir was taken away from the agent, which is then on its way out.
      if (this.#log === undefined) return;
      try {
        await this.#log.append(text);
      } catch (err) {
        // Part of the text may be in the file: a line torn in the middle would end the replay
        // of the journal at load and hide the lines after it. Start a fresh journal first.
        await this.#closeLog();
        throw err;
      }
      // The snapshot is written from the guard: it must hold what the journal holds. (Nonces
      // are in it already: the verifier records them.)
      for (const r of records) {
        if (r.id === undefined) continue;
        this.#guard.recent.add(r.id);
        this.#guard.lastEventId = r.id;
      }
    });
    // A failed write must not poison the ones after it; the caller hears of this one.
    this.#chain = run.catch(() => undefined);
    return run;
  }

  /**
   * Writes the whole bookkeeping as a snapshot with an empty journal, and lets go of the file
   * (shutdown; a later commit starts a new journal).
   */
  close(): Promise<void> {
    const run = this.#chain.then(async () => {
      await this.#compact(0);
      await this.#closeLog();
    });
    this.#chain = run.catch(() => undefined);
    return run;
  }

  async #closeLog(): Promise<void> {
    const log = this.#log;
    this.#log = undefined;
    await log?.close().catch(() => undefined);
  }

  /** A snapshot of the guard, then a new journal of `capacity` bytes that names it. */
  async #compact(capacity: number): Promise<void> {
    // The journal file is about to be replaced: the descriptor held would write to the old one.
    await this.#closeLog();
    const id = randomBytes(8).toString("hex");
    await this.#writer.writeFileAtomic(this.#snapshot, JSON.stringify({ journal_base: id, ...this.#guard.toJSON() }) + "\n");
    this.#log = await this.#writer.createAppendLog(this.#journal, JSON.stringify({ snapshot: id }) + "\n", capacity);
  }
}
