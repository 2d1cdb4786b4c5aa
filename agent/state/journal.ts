import { randomBytes } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { plainWriter, type DataWriter } from "../util/atomic.js";
import { parseJsonLine } from "../util/json-line.js";

// How the desired state reaches the disk: a snapshot (cache/desired.json, written
// atomically) plus a journal of peer changes since it (cache/desired.journal, appended and
// fsynced). At 10,000 peers a snapshot is megabytes; a peer event appends one line, so its
// cost does not grow with the mesh. The journal is folded into a new snapshot once it has
// grown as large as the snapshot itself, which keeps the amortised cost per change constant.
//
// Crash safety: the journal's first line names the snapshot it extends. A new snapshot gets
// a new id before the old journal is replaced, so a crash between the two leaves a journal
// whose id matches nothing, and it is ignored — its changes are already in the snapshot. A
// torn last line (a crash mid-append) fails to parse and is dropped; every line before it
// is a whole change.

/** One journal line: peers set (an object) or removed (null) since the snapshot. */
export type PeerOps = Record<string, unknown>;

interface Header {
  snapshot: string;
}

export interface Loaded {
  /** The snapshot's content with the journal replayed into its `peers`. */
  state: Record<string, unknown> | undefined;
  /** Lines replayed; for tests and the log. */
  replayed: number;
}

export class StateFiles {
  readonly #snapshot: string;
  readonly #journal: string;
  readonly #writer: DataWriter;
  #id = "";
  #snapshotBytes = 0;
  #journalBytes = 0;

  constructor(snapshotPath: string, writer: DataWriter = plainWriter) {
    this.#snapshot = snapshotPath;
    this.#writer = writer;
    this.#journal = snapshotPath.replace(/\.json$/, "") + ".journal";
  }

  async load(): Promise<Loaded> {
    let state: Record<string, unknown> | undefined;
    try {
      const text = await readFile(this.#snapshot, "utf8");
      const parsed = JSON.parse(text) as Record<string, unknown>;
      const { journal_base: id, ...rest } = parsed;
      state = rest;
      this.#id = typeof id === "string" ? id : "";
      this.#snapshotBytes = text.length;
    } catch {
      return { state: undefined, replayed: 0 };
    }
    let replayed = 0;
    const text = await readFile(this.#journal, "utf8").catch(() => "");
    const lines = text.split("\n");
    const header = parseJsonLine<Header>(lines[0] ?? "");
    if (this.#id !== "" && header?.snapshot === this.#id) {
      const peers = (typeof state.peers === "object" && state.peers !== null ? state.peers : {}) as Record<string, unknown>;
      for (const line of lines.slice(1)) {
        const ops = parseJsonLine<PeerOps>(line);
        if (ops === undefined) break; // the torn tail of an interrupted append, or the end
        for (const [id, peer] of Object.entries(ops)) {
          if (peer === null) delete peers[id];
          else peers[id] = peer;
        }
        replayed++;
      }
      state.peers = peers;
      this.#journalBytes = text.length;
    } else this.#id = ""; // no journal for this snapshot: the next write starts one
    return { state, replayed };
  }

  /** The whole state as the new snapshot; the journal starts over. */
  async writeSnapshot(state: object): Promise<void> {
    const id = randomBytes(8).toString("hex");
    const text = JSON.stringify({ journal_base: id, ...state });
    await this.#writer.writeFileAtomic(this.#snapshot, text + "\n");
    const header = JSON.stringify({ snapshot: id } satisfies Header) + "\n";
    await this.#writer.writeFileAtomic(this.#journal, header);
    this.#id = id;
    this.#snapshotBytes = text.length;
    this.#journalBytes = header.length;
  }

  /** Whether appending `bytes` more should rather fold the journal into a snapshot. */
  wantsSnapshot(bytes: number): boolean {
    return this.#id === "" || this.#journalBytes + bytes > Math.max(this.#snapshotBytes, 64 * 1024);
  }

  /** Appends one line of peer changes (JSON of PeerOps, no newline) and fsyncs it. */
  async append(json: string): Promise<void> {
    const line = json + "\n";
    await this.#writer.appendDurable(this.#journal, line);
    this.#journalBytes += line.length;
  }

  /** Sizes on disk (tests). */
  async sizes(): Promise<{ snapshot: number; journal: number }> {
    const size = async (p: string) => (await stat(p).catch(() => undefined))?.size ?? 0;
    return { snapshot: await size(this.#snapshot), journal: await size(this.#journal) };
  }
}
