// Log forwarding (docs/telemetry.md#logs): journald and files into the logs pipeline, read
// positions persisted only after their batch commits, plus the views `plexd log-status` and
// `plexd logs` read through the node API.
import { access, constants } from "node:fs/promises";
import { hostname as osHostname } from "node:os";
import { globSync, isDynamicPattern } from "tinyglobby";
import { PlexdError } from "../../../proto/lib/errors.js";
import { pause } from "../../../proto/lib/timers.js";
import type { Config } from "../../config/schema.js";
import type { PrivClient } from "../../privclient/client.js";
import type { DataWriter } from "../../util/atomic.js";
import type { Logger } from "../../util/log.js";
import { encodeEntry, entryFrame, framedLine, type LogEntry } from "./entry.js";
import { directAccess, isDenied, privhelperAccess, type FileAccess } from "./file-access.js";
import { FileTail } from "./file-tail.js";
import { filePatterns, journalFilter } from "./filters.js";
import { followJournal, type JournalOptions } from "./journald.js";
import { PositionBook } from "./positions.js";

/** What the forwarder needs of the delivery pipeline (agent/telemetry/delivery.ts): it pushes each entry already as its NDJSON line. */
export interface LogPipeline {
  push(line: string): number;
  onCommitted(cb: (lastSeq: number) => void): void;
  counters(): {
    buffered: number;
    dropped_overflow_total: number;
    dropped_oversize_total: number;
    sent_batches_total: number;
    last_flush_at: string | null;
    last_flush_outcome: string | null;
    last_success_at: string | null;
    last_error: string | null;
  };
}

export interface LogSourceView {
  /** "journald" or the file path. */
  name: string;
  kind: "journald" | "file";
  /** direct, privhelper, or journalctl. */
  via: string;
  /** reading, missing, denied, error. */
  state: string;
  detail: string;
  lines_total: number;
}

export interface RecentLine {
  seq: number;
  entry: LogEntry;
}

export interface ForwarderDeps {
  config: () => Config["logs"];
  dataDir: string;
  writer: DataWriter;
  priv: PrivClient;
  pipeline: LogPipeline;
  log: Logger;
  hostname?: string;
  pollMs?: number;
  discoverMs?: number;
  journalctl?: JournalOptions["journalctl"];
}

const recentKeep = 1000;
/** After a poll that read lines, the next comes this soon (a busy file is read in step with its writer). */
const busyPollMs = 20;

/** An entry without its message: shared by the lines of one file read in one poll. */
type LineMeta = Omit<LogEntry, "message">;

interface Tailed {
  tail: FileTail;
  lines: number;
  denied?: string | undefined;
  reported?: string;
  /** This poll's entry fields and their NDJSON frame (entryFrame). */
  meta?: LineMeta;
  head?: string;
  foot?: string;
  headQ?: string;
  footQ?: string;
}

export class LogForwarder {
  readonly #d: ForwarderDeps;
  readonly #host: string;
  #book!: PositionBook;
  readonly #tails = new Map<string, Tailed>();
  // The last lines pushed, for `plexd logs`: a ring of parallel arrays (no object per line).
  readonly #recentSeq: number[] = [];
  readonly #recentMsg: string[] = [];
  readonly #recentMeta: LineMeta[] = [];
  #recentNext = 0;
  readonly #stop = new AbortController();
  #journal: LogSourceView | undefined;
  #loops: Promise<void>[] = [];
  #firstDiscovery = true;

  constructor(deps: ForwarderDeps) {
    this.#d = deps;
    this.#host = deps.hostname ?? osHostname();
  }

  async start(): Promise<void> {
    const { log } = this.#d;
    this.#book = await PositionBook.open(this.#d.dataDir, this.#d.writer, () => this.#d.config().buffer_size, (err) => log.warn({ err: PlexdError.from(err).message }, "log read positions could not be read or written"));
    this.#d.pipeline.onCommitted((seq) => this.#book.commit(seq));
    const cfg = this.#d.config();
    if (cfg.sources.includes("journald")) this.#startJournal();
    await this.#discover();
    this.#loops.push(this.#every(this.#d.discoverMs ?? 10_000, () => this.#discover()));
    this.#loops.push(this.#pollLoop(this.#d.pollMs ?? 250));
  }

  /** Stops journalctl and the file reads; nothing more is pushed. */
  async stopReading(): Promise<void> {
    this.#stop.abort();
    await Promise.all(this.#loops);
    for (const t of this.#tails.values()) await t.tail.close();
  }

  /** Writes the committed positions (after the pipeline's final flush). */
  async close(): Promise<void> {
    await this.stopReading();
    await this.#book.flush();
  }

  sources(): LogSourceView[] {
    const files = [...this.#tails.values()].map((t): LogSourceView => {
      // privhelper answers a missing file and one outside logs.tail_files alike (it tells the agent nothing about other files).
      const refused = t.tail.state === "missing" ? t.tail.access.refusal?.(t.tail.path) : undefined;
      return {
        name: t.tail.path,
        kind: "file",
        via: t.tail.access.via,
        state: t.denied !== undefined || refused !== undefined ? "denied" : t.tail.state,
        detail: t.denied ?? refused ?? t.tail.error,
        lines_total: t.lines,
      };
    });
    return this.#journal ? [this.#journal, ...files] : files;
  }

  /** Lines pushed after `afterSeq` (0: the last `limit`), oldest first. */
  recent(afterSeq: number, limit: number): RecentLine[] {
    const n = this.#recentSeq.length;
    const lines: RecentLine[] = [];
    for (let k = 0; k < n; k++) {
      const i = (this.#recentNext + k) % n;
      if (this.#recentSeq[i]! > afterSeq) lines.push({ seq: this.#recentSeq[i]!, entry: { ...this.#recentMeta[i]!, message: this.#recentMsg[i]! } });
    }
    return afterSeq === 0 || lines.length > limit ? lines.slice(-limit) : lines;
  }

  /** Remembers a pushed line for recent(). */
  #remember(seq: number, message: string, meta: LineMeta): void {
    const i = this.#recentNext;
    this.#recentSeq[i] = seq;
    this.#recentMsg[i] = message;
    this.#recentMeta[i] = meta;
    this.#recentNext = (i + 1) % recentKeep;
  }

  #startJournal(): void {
    const view: LogSourceView = { name: "journald", kind: "journald", via: "journalctl", state: "reading", detail: "", lines_total: 0 };
    this.#journal = view;
    const committed = this.#book.committed("journald");
    const cursor = committed !== undefined && "cursor" in committed ? committed.cursor : undefined;
    const journalctl = this.#d.journalctl;
    this.#loops.push(
      followJournal({
        cursor,
        filter: () => journalFilter(this.#d.config().filters),
        hostname: this.#host,
        maxLine: () => this.#d.config().max_line_size,
        signal: this.#stop.signal,
        ...(journalctl ? { journalctl } : {}),
        sink: {
          entry: (e, c) => {
            view.lines_total++;
            view.state = "reading";
            const seq = this.#d.pipeline.push(encodeEntry(e));
            this.#book.note(seq, "journald", { cursor: c });
            this.#remember(seq, e.message, e);
          },
        },
        onProblem: (text) => {
          view.state = "error";
          view.detail = text;
          this.#d.log.warn({ source: "journald" }, text);
        },
      }).catch((err: unknown) => {
        view.state = "error";
        view.detail = PlexdError.from(err).message;
      }),
    );
  }

  /** Globs are expanded again every 10 s: new files are picked up, vanished ones dropped. */
  async #discover(): Promise<void> {
    const cfg = this.#d.config();
    const patterns = filePatterns(cfg.sources, cfg.filters);
    const paths = new Set<string>();
    for (const p of patterns) {
      if (!isDynamicPattern(p)) paths.add(p);
      else for (const f of globSync(p, { absolute: true, onlyFiles: true })) paths.add(f);
    }
    for (const path of paths) {
      if (this.#tails.has(path)) continue;
      const via = await this.#accessFor(path);
      const t: Tailed = { tail: undefined as unknown as FileTail, lines: 0 };
      t.tail = this.#tailOf(path, via, t);
      this.#tails.set(path, t);
    }
    for (const [path, t] of this.#tails) {
      if (paths.has(path) || t.tail.state !== "missing") continue;
      await t.tail.close();
      this.#tails.delete(path);
    }
    this.#firstDiscovery = false;
  }

  async #accessFor(path: string): Promise<FileAccess> {
    const err = await access(path, constants.R_OK).then(
      () => undefined,
      (e: unknown) => e,
    );
    return err !== undefined && isDenied(err) ? privhelperAccess(this.#d.priv) : directAccess;
  }

  #tailOf(path: string, via: FileAccess, t: Tailed): FileTail {
    const key = `file:${path}`;
    const committed = this.#book.committed(key);
    const resume = committed !== undefined && "inode" in committed ? committed : undefined;
    // Files there at the first start begin at their end; files that appear later are new, read whole.
    return new FileTail(path, via, { line: (message, inode, offset, skip) => this.#fileLine(t, key, message, inode, offset, skip) }, () => this.#d.config().max_line_size, { resume, startAtEnd: this.#firstDiscovery });
  }

  /** One file line: the poll's frame around the message is its NDJSON line (the hot path: no object per line). */
  #fileLine(t: Tailed, key: string, message: string, inode: string, offset: number, skip: boolean): void {
    t.lines++;
    const seq = this.#d.pipeline.push(framedLine(t.head!, t.foot!, t.headQ!, t.footQ!, message));
    this.#book.noteFile(seq, key, inode, offset, skip);
    this.#remember(seq, message, t.meta!);
  }

  /**
   * Each file is read to its end every `ms` (250 ms) while nothing comes; after a poll that
   * read lines the next one comes after 20 ms, and the wait doubles back to `ms` with every
   * empty poll. A busy file is then read in step with its writer instead of in 250 ms bursts
   * (which left the sender idle between them), at the cost of a few more stat calls a second.
   */
  async #pollLoop(ms: number): Promise<void> {
    const signal = this.#stop.signal;
    let wait = ms;
    while (!signal.aborted) {
      const before = this.#linesRead();
      await this.#pollAll().catch((err: unknown) => this.#d.log.warn({ err: PlexdError.from(err).message }, "log file poll failed"));
      wait = this.#linesRead() > before ? Math.min(ms, busyPollMs) : Math.min(ms, wait * 2);
      await pause(wait, signal);
    }
  }

  #linesRead(): number {
    let n = 0;
    for (const t of this.#tails.values()) n += t.lines;
    return n;
  }

  async #pollAll(): Promise<void> {
    for (const [path, t] of this.#tails) {
      if (this.#stop.signal.aborted) return;
      t.meta = { timestamp: new Date().toISOString(), source: "file", unit: "", path, severity: "info", hostname: this.#host };
      [t.head, t.foot] = entryFrame(t.meta);
      t.headQ = `${t.head}"`;
      t.footQ = `"${t.foot}`;
      try {
        await t.tail.poll();
        t.denied = undefined;
        t.tail.error = "";
      } catch (err) {
        const e = PlexdError.from(err);
        if (isDenied(err) && t.tail.access.via === "direct") {
          // Lost read access (permissions changed): privhelper may serve it if it is allow-listed.
          t.tail = this.#tailOf(path, privhelperAccess(this.#d.priv), t);
          continue;
        }
        if (isDenied(err)) t.denied = e.message;
        else t.tail.error = e.message;
        if (t.reported !== e.message) this.#d.log.warn({ path, via: t.tail.access.via, err: e.message }, "log file not readable; retrying");
        t.reported = e.message;
      }
    }
  }

  async #every(ms: number, fn: () => Promise<void>): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      await pause(ms, signal);
      if (signal.aborted) return;
      await fn().catch((err: unknown) => this.#d.log.warn({ err: PlexdError.from(err).message }, "log forwarding step failed"));
    }
  }
}
