import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { plainWriter, type AppendLog, type DataWriter } from "./atomic.js";
import { parseJsonLine } from "./json-line.js";

// Crash-safe bookkeeping that must be durable before its effect (the replay guard of the event
// stream, the executed-id memory of actions): two files,
//
//   <name>.json     the bookkeeping as a whole, written atomically from time to time and tagged
//                   with a random id;
//   <name>.journal  its first line names that id; then one JSON line per record since, written
//                   durably (O_DSYNC) in a file created zero-filled at its full size and written
//                   in place (atomic.ts createAppendLog), so a durable write costs no metadata.
//
// When the journal is full, a new snapshot is written, with a new id, before a new journal
// replaces the old one: a crash in between leaves a journal that names an older snapshot, which
// is ignored — everything in it is in the new snapshot. Reading stops at the first line that
// does not parse: the zeros not yet written, or a line torn by a crash mid-write, whose records
// were never acted upon (their append had not returned).

export interface Loaded {
  /** The snapshot without its tag, or undefined when there is none. */
  snapshot: Record<string, unknown> | undefined;
  /** Journal lines written since that snapshot, in order. */
  lines: Record<string, unknown>[];
  /** Why the snapshot could not be read (not given for a missing file). */
  error?: unknown;
}

export class SnapshotJournal {
  readonly #snapshot: string;
  readonly #journal: string;
  readonly #writer: DataWriter;
  readonly #capacity: number;
  /** The journal being written, from the last snapshot on; undefined until the first append. */
  #log: AppendLog | undefined;
  /** Every write, in order: appends and compactions never interleave. */
  #chain: Promise<void> = Promise.resolve();

  /** `capacity`: the journal's size in bytes before it is folded into a new snapshot. */
  constructor(snapshotPath: string, journalPath: string, capacity: number, writer: DataWriter = plainWriter) {
    this.#snapshot = snapshotPath;
    this.#journal = journalPath;
    this.#capacity = capacity;
    this.#writer = writer;
  }

  async load(): Promise<Loaded> {
    let snapshot: Record<string, unknown> | undefined;
    let base = "";
    let error: unknown;
    try {
      const { journal_base: id, ...rest } = JSON.parse(await readFile(this.#snapshot, "utf8")) as Record<string, unknown>;
      snapshot = rest;
      base = typeof id === "string" ? id : "";
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") error = err;
    }
    const lines: Record<string, unknown>[] = [];
    const text = await readFile(this.#journal, "utf8").catch(() => "");
    const raw = text.split("\n");
    const header = parseJsonLine<{ snapshot?: unknown }>(raw[0] ?? "");
    if (base !== "" && header?.snapshot === base) {
      for (const r of raw.slice(1)) {
        const l = parseJsonLine<Record<string, unknown>>(r);
        if (l === undefined) break; // the zeros not yet written, or a torn line
        lines.push(l);
      }
    }
    return { snapshot, lines, ...(error === undefined ? {} : { error }) };
  }

  /**
   * Makes `lines` durable: resolves once they are appended and synced, after which their effect
   * may happen; then `applied` runs (before any later write). `snapshot` gives the whole
   * bookkeeping without these lines, should the journal need folding first. Rejects if the
   * lines could not be written.
   */
  append(lines: readonly object[], snapshot: () => object, applied: () => void = () => undefined): Promise<void> {
    if (lines.length === 0) return this.#chain;
    const text = lines.map((l) => JSON.stringify(l)).join("\n") + "\n";
    const bytes = Buffer.byteLength(text);
    const run = this.#chain.then(async () => {
      if (this.#log === undefined || this.#log.room < bytes) await this.#compact(snapshot(), Math.max(this.#capacity, 2 * bytes));
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
      applied();
    });
    // A failed write must not poison the ones after it; the caller hears of this one.
    this.#chain = run.catch(() => undefined);
    return run;
  }

  /** Writes `snapshot()` with an empty journal and lets go of the file (shutdown; a later append starts a new journal). */
  close(snapshot: () => object): Promise<void> {
    const run = this.#chain.then(async () => {
      await this.#compact(snapshot(), 0);
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

  /** A snapshot, then a new journal of `capacity` bytes that names it. */
  async #compact(content: object, capacity: number): Promise<void> {
    // The journal file is about to be replaced: the descriptor held would write to the old one.
    await this.#closeLog();
    const id = randomBytes(8).toString("hex");
    await this.#writer.writeFileAtomic(this.#snapshot, JSON.stringify({ journal_base: id, ...content }) + "\n");
    this.#log = await this.#writer.createAppendLog(this.#journal, JSON.stringify({ snapshot: id }) + "\n", capacity);
  }
}
