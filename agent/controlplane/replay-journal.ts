import { join } from "node:path";
import { PlexdError } from "../../proto/lib/errors.js";
import { plainWriter, type DataWriter } from "../util/atomic.js";
import type { Logger } from "../util/log.js";
import { SnapshotJournal } from "../util/snapshot-journal.js";
import { ReplayGuard } from "./replay.js";

// Crash-safe replay protection (docs/decisions.md#replay-protection-across-crashes): an event's id and nonce are on disk before its
// handler runs, so a captured event replayed after a restart is refused also when the agent was
// killed (SIGKILL, power loss) a moment after handling it. Two files under data_dir/cache:
//
//   events.json     the bookkeeping as a whole (nonces, recent ids, Last-Event-ID);
//   events.journal  one line per event handled since, written durably before the events are
//                   dispatched (util/snapshot-journal.ts says how the two stay consistent).
//
// The events that arrive together (one network read) share one write, so the cost of
// durability is spread over them.
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
  readonly #files: SnapshotJournal;
  readonly #guard: ReplayGuard;

  private constructor(files: SnapshotJournal, guard: ReplayGuard) {
    this.#files = files;
    this.#guard = guard;
  }

  get guard(): ReplayGuard {
    return this.#guard;
  }

  /** Loads the snapshot and replays the journal into it; unreadable bookkeeping starts empty (logged). */
  static async open(dataDir: string, now: number, log: Logger, writer: DataWriter = plainWriter): Promise<ReplayJournal> {
    const files = new SnapshotJournal(join(dataDir, "cache", "events.json"), join(dataDir, "cache", "events.journal"), journalBytes, writer);
    const loaded = await files.load();
    let guard = new ReplayGuard();
    try {
      if (loaded.error !== undefined) throw loaded.error;
      if (loaded.snapshot !== undefined) guard = ReplayGuard.fromJSON(loaded.snapshot, now);
    } catch (err) {
      log.warn({ err: PlexdError.from(err).message }, "event-stream bookkeeping unreadable; starting empty");
    }
    const j = new ReplayJournal(files, guard);
    for (const l of loaded.lines as Line[]) {
      if (typeof l.i !== "string" && typeof l.n !== "string") break;
      j.#apply(l, now);
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
    const lines = records.map((r) => ({ ...(r.id === undefined ? {} : { i: r.id }), ...(r.nonce === undefined ? {} : { n: r.nonce, x: r.expiresAt }) }) satisfies Line);
    // The snapshot is written from the guard: it must hold what the journal holds. (Nonces are
    // in it already: the verifier records them.)
    return this.#files.append(lines, () => this.#guard.toJSON(), () => {
      for (const r of records) {
        if (r.id === undefined) continue;
        this.#guard.recent.add(r.id);
        this.#guard.lastEventId = r.id;
      }
    });
  }

  /**
   * Writes the whole bookkeeping as a snapshot with an empty journal, and lets go of the file
   * (shutdown; a later commit starts a new journal).
   */
  close(): Promise<void> {
    return this.#files.close(() => this.#guard.toJSON());
  }
}
