// Read positions that move only after their batch commits (at-least-once across restarts):
// each pushed line notes where its source would resume after it; a commit up to sequence N
// makes the notes ≤ N the persisted positions. After a restart, whatever was read but not
// committed is read again: duplicates only for the batches in flight, never a gap.
import { join } from "node:path";
import { readFile } from "node:fs/promises";
import type { DataWriter } from "../../util/atomic.js";

/** A file: which file (inode "<dev>:<ino>"), the byte after the last line, and whether a cut oversize line is still being skipped. */
export interface FilePosition {
  inode: string;
  offset: number;
  skip: boolean;
}
export type Position = FilePosition | { cursor: string };

export const positionsFile = "logs-positions.json";

export class PositionBook {
  readonly #committed = new Map<string, Position>();
  // Notes in push order (sequence numbers rise), in a ring of parallel arrays: one line costs
  // no object, and the arrays are reallocated only when the ring grows. A note is a file
  // position (offset >= 0, ref = inode) or a journald cursor (offset -1, ref = cursor).
  // Notes [head, tail) are live; note n sits at n % cap.
  #cap = 1024;
  #seqs = new Float64Array(this.#cap);
  #offsets = new Float64Array(this.#cap);
  #skips = new Uint8Array(this.#cap);
  #keys: string[] = new Array<string>(this.#cap).fill("");
  #refs: string[] = new Array<string>(this.#cap).fill("");
  #head = 0;
  #tail = 0;
  #dirty = false;
  #timer: NodeJS.Timeout | undefined;
  #writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly path: string,
    private readonly writer: DataWriter,
    /** The ring's size: notes of older lines belong to entries the ring has evicted. */
    private readonly limit: () => number,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** `file`: the audit pipeline keeps its Kubernetes audit log position in a book of its own. */
  static async open(dataDir: string, writer: DataWriter, limit: () => number, onError: (err: unknown) => void, file = positionsFile): Promise<PositionBook> {
    const book = new PositionBook(join(dataDir, file), writer, limit, onError);
    const text = await readFile(book.path, "utf8").catch(() => undefined);
    if (text !== undefined) {
      try {
        const doc = JSON.parse(text) as { positions?: Record<string, Position> };
        for (const [k, v] of Object.entries(doc.positions ?? {})) book.#committed.set(k, v);
      } catch (err) {
        onError(err);
      }
    }
    return book;
  }

  committed(key: string): Position | undefined {
    return this.#committed.get(key);
  }

  note(seq: number, key: string, pos: Position): void {
    if ("cursor" in pos) this.#add(seq, key, pos.cursor, -1, false);
    else this.#add(seq, key, pos.inode, pos.offset, pos.skip);
  }

  /** note() of a file position given as its parts (the tailer's hot path). */
  noteFile(seq: number, key: string, inode: string, offset: number, skip: boolean): void {
    this.#add(seq, key, inode, offset, skip);
  }

  #add(seq: number, key: string, ref: string, offset: number, skip: boolean): void {
    if (this.#tail - this.#head === this.#cap) this.#grow();
    const i = this.#tail++ % this.#cap;
    this.#seqs[i] = seq;
    this.#keys[i] = key;
    this.#refs[i] = ref;
    this.#offsets[i] = offset;
    this.#skips[i] = skip ? 1 : 0;
    // Lines older than the ring are gone (counted as overflow); a later note of the same
    // source supersedes theirs, so dropping them loses no position.
    if (this.#tail - this.#head > this.limit() + 1) this.#head++;
  }

  /** Twice the room, the live notes moved to the front in order. */
  #grow(): void {
    const cap = this.#cap * 2;
    const seqs = new Float64Array(cap);
    const offsets = new Float64Array(cap);
    const skips = new Uint8Array(cap);
    const keys = new Array<string>(cap).fill("");
    const refs = new Array<string>(cap).fill("");
    const n = this.#tail - this.#head;
    for (let k = 0; k < n; k++) {
      const i = (this.#head + k) % this.#cap;
      seqs[k] = this.#seqs[i]!;
      offsets[k] = this.#offsets[i]!;
      skips[k] = this.#skips[i]!;
      keys[k] = this.#keys[i]!;
      refs[k] = this.#refs[i]!;
    }
    [this.#cap, this.#seqs, this.#offsets, this.#skips, this.#keys, this.#refs, this.#head, this.#tail] = [cap, seqs, offsets, skips, keys, refs, 0, n];
  }

  /** Everything ≤ lastSeq reached the control plane: their positions become the persisted ones. */
  commit(lastSeq: number): void {
    // Only the newest committed note of each source matters: find those, then make positions.
    const newest = new Map<string, number>();
    for (; this.#head < this.#tail && this.#seqs[this.#head % this.#cap]! <= lastSeq; this.#head++) newest.set(this.#keys[this.#head % this.#cap]!, this.#head % this.#cap);
    for (const [key, i] of newest) {
      const offset = this.#offsets[i]!;
      this.#committed.set(key, offset < 0 ? { cursor: this.#refs[i]! } : { inode: this.#refs[i]!, offset, skip: this.#skips[i] === 1 });
      this.#dirty = true;
    }
    if (this.#dirty) this.#timer ??= setTimeout(() => void this.flush(), 1000);
  }

  /** Writes the committed positions now (on shutdown, and at most once a second otherwise). */
  async flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const run = this.#writing.then(async () => {
      if (!this.#dirty) return;
      this.#dirty = false;
      const doc = { positions: Object.fromEntries(this.#committed) };
      await this.writer.writeJsonAtomic(this.path, doc, 0o600).catch((err: unknown) => {
        this.#dirty = true;
        this.onError(err);
      });
    });
    this.#writing = run;
    await run;
  }
}
