import { rm, rmdir, stat } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";
import { appendDurable, createAppendLog, writeFileAtomic, writeJsonAtomic, type AppendLog, type DataWriter } from "../util/atomic.js";

// A running agent must never recreate files in a data_dir whose identity someone else
// removed — `plexd deregister [--purge]` run beside it. Once armed (the agent holds an
// identity on disk), every persistence write goes through here: none starts once
// identity.json is gone, and one that raced with the removal is taken back, empty
// directories it created included. `signal` aborts at that moment so the agent can stop.
//
// Why the take-back closes the race: the purge removes identity.json first and lists
// data_dir after. A write that still saw identity.json after it completed finished before
// that listing, so the purge removes it; a write that no longer sees it removes itself.

export class DataDirFence implements DataWriter {
  readonly #dataDir: string;
  readonly #anchor: string;
  readonly #gone = new AbortController();
  #armed = false;
  #replacing = 0;

  constructor(dataDir: string) {
    this.#dataDir = dataDir;
    this.#anchor = join(dataDir, "identity.json");
  }

  /** Aborts once data_dir's identity was removed behind the agent's back. */
  get signal(): AbortSignal {
    return this.#gone.signal;
  }

  get identityRemoved(): boolean {
    return this.#gone.signal.aborted;
  }

  /** From now on data_dir must hold the identity (call once one is loaded or saved). */
  arm(): void {
    this.#armed = true;
  }

  /** The agent replaces its own identity (re-registration): identity.json may be missing meanwhile. */
  async replacing<T>(fn: () => Promise<T>): Promise<T> {
    this.#replacing++;
    try {
      return await fn();
    } finally {
      this.#replacing--;
    }
  }

  /** Whether data_dir still holds this agent's identity; the first "no" is final. */
  async stillOurs(): Promise<boolean> {
    if (this.identityRemoved) return false;
    if (!this.#armed || this.#replacing > 0) return true;
    try {
      await stat(this.#anchor);
      return true;
    } catch (err) {
      // Only a missing identity means removal; any other error is no evidence of one.
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") return true;
      this.#gone.abort(new Error(`${this.#anchor} was removed`));
      return false;
    }
  }

  /** Checks every `intervalMs` until `signal` aborts or the identity is gone. */
  async watch(signal: AbortSignal, sleep: (ms: number, signal: AbortSignal) => Promise<void>, intervalMs = 1000): Promise<void> {
    while (!signal.aborted && (await this.stillOurs())) {
      try {
        await sleep(intervalMs, signal);
      } catch {
        return;
      }
    }
  }

  writeFileAtomic(path: string, data: string | Uint8Array, mode?: number): Promise<void> {
    return this.guardedWrite(path, () => writeFileAtomic(path, data, mode));
  }

  writeJsonAtomic(path: string, value: unknown, mode?: number): Promise<void> {
    return this.guardedWrite(path, () => writeJsonAtomic(path, value, mode));
  }

  appendDurable(path: string, data: string): Promise<void> {
    return this.guardedWrite(path, () => appendDurable(path, data));
  }

  /**
   * The file is created under the fence; its appends then need no check of their own: once the
   * file is removed they go to the unlinked file and never create it again.
   */
  async createAppendLog(path: string, header: string, capacity: number): Promise<AppendLog | undefined> {
    let log: AppendLog | undefined;
    await this.guardedWrite(path, async () => {
      log = await createAppendLog(path, header, capacity);
    });
    if (log !== undefined && !(await this.stillOurs())) {
      await log.close();
      return undefined;
    }
    return log;
  }

  /** Runs `write` (which creates or changes `path`) under the fence. */
  async guardedWrite(path: string, write: () => Promise<void>): Promise<void> {
    if (!(await this.stillOurs())) return;
    try {
      await write();
    } catch (err) {
      // A write that failed because data_dir was emptied under it is no failure of ours.
      if (await this.stillOurs()) throw err;
    }
    if (await this.stillOurs()) return;
    await rm(path, { force: true });
    await this.#removeEmptyParents(path);
  }

  /** rmdir from the file's directory up to (not including) data_dir; stops at one that is not empty. */
  async #removeEmptyParents(path: string): Promise<void> {
    for (let dir = dirname(path); isInside(this.#dataDir, dir); dir = dirname(dir)) {
      try {
        await rmdir(dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") return;
      }
    }
  }
}

function isInside(parent: string, child: string): boolean {
  const rel = relative(parent, child);
  return rel !== "" && !rel.startsWith(`..${sep}`) && rel !== ".." && !rel.startsWith(sep);
}
