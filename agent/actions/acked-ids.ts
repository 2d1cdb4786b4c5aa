import { join } from "node:path";
import { PlexdError } from "../../proto/lib/errors.js";
import { plainWriter, type DataWriter } from "../util/atomic.js";
import type { Logger } from "../util/log.js";
import { SnapshotJournal } from "../util/snapshot-journal.js";

// The executed-id memory (docs/actions.md, "Nothing runs twice"): every execution id the agent
// acknowledged in the last 24 h, on disk before the ack is sent and before anything runs, so a
// replayed action_request — also after a restart, SIGKILL or power loss — is dropped instead of
// run a second time. data_dir/executions/acked.json plus its journal (util/snapshot-journal.ts).

export const ackedMemoryMs = 24 * 3600_000;
const journalBytes = 256 * 1024;

interface Line {
  i?: unknown;
  x?: unknown;
}

export class AckedIds {
  readonly #files: SnapshotJournal;
  /** execution id → when it may be forgotten (ms since the epoch). */
  readonly #ids = new Map<string, number>();
  readonly #now: () => number;

  private constructor(files: SnapshotJournal, now: () => number) {
    this.#files = files;
    this.#now = now;
  }

  static async open(dataDir: string, now: () => number, log: Logger, writer: DataWriter = plainWriter): Promise<AckedIds> {
    const dir = join(dataDir, "executions");
    const files = new SnapshotJournal(join(dir, "acked.json"), join(dir, "acked.journal"), journalBytes, writer);
    const loaded = await files.load();
    const a = new AckedIds(files, now);
    if (loaded.error !== undefined) log.error({ err: PlexdError.from(loaded.error).message }, "executed-id memory unreadable; starting empty");
    const ids = loaded.snapshot?.ids;
    if (Array.isArray(ids)) for (const e of ids) if (Array.isArray(e)) a.#note({ i: e[0], x: e[1] });
    for (const l of loaded.lines) a.#note(l as Line);
    return a;
  }

  #note(l: Line): void {
    if (typeof l.i === "string" && typeof l.x === "number" && l.x > this.#now()) this.#ids.set(l.i, l.x);
  }

  /** Acknowledged within the last 24 h? */
  has(id: string): boolean {
    const x = this.#ids.get(id);
    if (x === undefined) return false;
    if (x > this.#now()) return true;
    this.#ids.delete(id);
    return false;
  }

  get size(): number {
    return this.#ids.size;
  }

  /** Resolves once `id` is durable; only then may its ack go out. */
  record(id: string): Promise<void> {
    const x = this.#now() + ackedMemoryMs;
    return this.#files.append([{ i: id, x }], () => this.#snapshot(), () => this.#ids.set(id, x));
  }

  #snapshot(): object {
    const now = this.#now();
    for (const [id, x] of this.#ids) if (x <= now) this.#ids.delete(id);
    return { ids: [...this.#ids] };
  }

  close(): Promise<void> {
    return this.#files.close(() => this.#snapshot());
  }
}
