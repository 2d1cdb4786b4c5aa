// The Kubernetes source (docs/telemetry.md#audit): the API server's audit log (JSON lines),
// read like a tailed log file (rotation, truncation, oversize lines) directly when the agent
// may read it, else through privhelper TailFile (the file is normally root-only). Active while
// the file exists, checked every 60 s. The read position is persisted only after its batch
// commits, so undelivered lines are read again after a restart (at-least-once).
import { access, constants } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { PlexdError } from "../../../proto/lib/errors.js";
import type { PrivClient } from "../../privclient/client.js";
import type { DataWriter } from "../../util/atomic.js";
import type { Logger } from "../../util/log.js";
import { directAccess, isDenied, privhelperAccess, type FileAccess } from "../logs/file-access.js";
import { FileTail } from "../logs/file-tail.js";
import { PositionBook, type FilePosition } from "../logs/positions.js";
import { rawCapBytes, type AuditEvent } from "./event.js";
import type { SourceView } from "./kernel.js";
import { normaliseK8s } from "./k8s.js";

export const k8sPositionsFile = "audit-positions.json";

export interface K8sDeps {
  path: string;
  dataDir: string;
  writer: DataWriter;
  priv: PrivClient;
  log: Logger;
  hostname: string;
  bufferSize: () => number;
  /** Pushes one event and returns its sequence number in the audit pipeline. */
  push(event: AuditEvent): number;
  onCommitted(cb: (lastSeq: number) => void): void;
  pollMs?: number;
  existsEveryMs?: number;
}

export class K8sAuditSource {
  readonly view: SourceView = { name: "kubernetes", state: "missing", detail: "", events_total: 0, records_total: 0, malformed_total: 0, last_event_at: null };
  readonly #d: K8sDeps;
  #book: PositionBook | undefined;
  #tail: FileTail | undefined;
  #first = true;

  constructor(deps: K8sDeps) {
    this.#d = deps;
  }

  async run(signal: AbortSignal): Promise<void> {
    const { log } = this.#d;
    const book = await PositionBook.open(this.#d.dataDir, this.#d.writer, this.#d.bufferSize, (err) => log.warn({ err: PlexdError.from(err).message }, "audit read position could not be read or written"), k8sPositionsFile);
    this.#book = book;
    this.#d.onCommitted((seq) => this.#book?.commit(seq));
    let lastCheck = -Infinity;
    try {
      while (!signal.aborted) {
        if (this.#tail === undefined && Date.now() - lastCheck >= (this.#d.existsEveryMs ?? 60_000)) {
          lastCheck = Date.now();
          await this.#open();
        }
        if (this.#tail) await this.#poll();
        await sleep(this.#d.pollMs ?? 500, undefined, { signal }).catch(() => undefined);
      }
    } finally {
      await this.#tail?.close();
    }
  }

  /** Writes the committed read position (after the pipeline's final flush). */
  async persist(): Promise<void> {
    await this.#book?.flush();
  }

  async #open(): Promise<void> {
    const { path } = this.#d;
    const readable = await access(path, constants.R_OK).then(
      () => true,
      (e: unknown) => (isDenied(e) ? false : undefined),
    );
    if (readable === undefined) {
      this.view.state = "missing";
      this.view.detail = `${path} does not exist (checked every 60 s)`;
      return;
    }
    const via: FileAccess = readable ? directAccess : privhelperAccess(this.#d.priv);
    const committed = this.#book!.committed("kubernetes");
    const resume = committed !== undefined && "inode" in committed ? committed : undefined;
    // A log there at the agent's first start begins at its end; one that appears later is read whole.
    this.#tail = new FileTail(path, via, { line: (text, inode, offset, skip) => this.#line(text, { inode, offset, skip }) }, () => 4 * rawCapBytes, { resume, startAtEnd: this.#first && resume === undefined });
    this.#first = false;
    this.view.state = "reading";
    this.view.detail = `via ${via.via}`;
  }

  async #poll(): Promise<void> {
    const tail = this.#tail!;
    try {
      await tail.poll();
      if (tail.state === "missing") {
        // Gone and not replaced: look for it again at the next existence check.
        await tail.close();
        this.#tail = undefined;
        this.view.state = "missing";
        this.view.detail = `${this.#d.path} is gone`;
      }
    } catch (err) {
      const e = PlexdError.from(err);
      if (this.view.detail !== e.message) this.#d.log.warn({ path: this.#d.path, via: tail.access.via, err: e.message }, "Kubernetes audit log not readable; retrying");
      this.view.state = "error";
      this.view.detail = e.message;
      await tail.close();
      this.#tail = undefined;
    }
  }

  #line(text: string, pos: FilePosition): void {
    this.view.records_total++;
    if (text.trim() === "") return;
    const out = normaliseK8s(text, this.#d.hostname);
    if ("malformed" in out) {
      const n = ++this.view.malformed_total;
      if (n === 1 || n % 100 === 0) this.#d.log.warn({ path: this.#d.path, malformed_total: n }, `malformed Kubernetes audit line skipped: ${out.malformed}`);
      return;
    }
    if ("skip" in out) return;
    this.view.events_total++;
    this.view.last_event_at = new Date().toISOString();
    this.#book!.note(this.#d.push(out.event), "kubernetes", pos);
  }
}
