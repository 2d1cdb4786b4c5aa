// One tailed file (docs/telemetry.md#logs): lines after the resume point, rotation (another
// inode under the path: the old file is read to its end, then the new one from 0), truncation
// (size below the offset: from 0), oversize lines (cut, the rest skipped up to the newline,
// memory bounded by max_line_size whatever the line's length), and a file deleted mid-read
// (read to its end, then waited for).
import { cutBytes, cutText } from "./entry.js";
import type { FileAccess, OpenFile } from "./file-access.js";
import type { FilePosition } from "./positions.js";

// Reads of 128 KiB (about a thousand typical lines): between two reads the sender gets its
// turn, so a busy file and its batches go out interleaved; 1 MiB reads held the event loop
// for tens of ms and measured more CPU and RSS in the log-forward bench.
const chunkBytes = 128 * 1024;

export interface TailSink {
  /**
   * One complete line (without its newline) and the position just after it (a FilePosition,
   * given as its parts: no object per line at 100,000 lines/s).
   */
  line(message: string, inode: string, offset: number, skip: boolean): void;
}

export type TailState = "reading" | "missing" | "error";

export class FileTail {
  #file: OpenFile | undefined;
  /** Bytes of the current file read so far, and the start of the unfinished line in `#partial`. */
  #readAt = 0;
  #partial: Buffer[] = [];
  #partialBytes = 0;
  #skip = false;
  #resume: FilePosition | undefined;
  #startAtEnd: boolean;
  state: TailState = "missing";
  error = "";

  constructor(
    readonly path: string,
    readonly access: FileAccess,
    private readonly sink: TailSink,
    private readonly maxLine: () => number,
    opts: { resume?: FilePosition | undefined; startAtEnd: boolean },
  ) {
    this.#resume = opts.resume;
    this.#startAtEnd = opts.startAtEnd;
  }

  get offset(): number {
    return this.#readAt - this.#partialBytes;
  }

  /** Reads everything new; call again at the next tick. Throws only what the access layer throws on open. */
  async poll(): Promise<void> {
    if (this.#file === undefined && !(await this.#open())) return;
    await this.#drain();
    const now = await this.access.stat(this.path);
    if (now !== undefined && now.inode === this.#file!.inode) {
      this.state = "reading";
      return;
    }
    // Renamed away or removed: what was written before that is still in the old file.
    await this.#drain();
    this.#endOfFile();
    await this.#file!.close().catch(() => undefined);
    this.#file = undefined;
    this.#startAtEnd = false;
    this.#resume = undefined;
    if (now === undefined) this.state = "missing";
    else await this.poll();
  }

  async close(): Promise<void> {
    await this.#file?.close().catch(() => undefined);
    this.#file = undefined;
  }

  async #open(): Promise<boolean> {
    const st = await this.access.stat(this.path);
    if (st === undefined) {
      this.state = "missing";
      return false;
    }
    this.#file = await this.access.open(this.path);
    const r = this.#resume;
    if (r !== undefined && r.inode === this.#file.inode && r.offset <= st.size) {
      this.#readAt = r.offset;
      this.#skip = r.skip;
    } else if (r === undefined && this.#startAtEnd) this.#readAt = st.size;
    else this.#readAt = 0;
    this.#resume = undefined;
    this.#clearPartial();
    this.state = "reading";
    return true;
  }

  async #drain(): Promise<void> {
    const file = this.#file!;
    for (;;) {
      const { data, size } = await file.read(this.#readAt, chunkBytes);
      if (size < this.#readAt) {
        // Truncated (copytruncate): everything now in the file is new.
        this.#readAt = 0;
        this.#skip = false;
        this.#clearPartial();
        continue;
      }
      if (data.length === 0) return;
      this.#consume(data);
      if (data.length < chunkBytes) return;
    }
  }

  #consume(data: Buffer): void {
    const max = this.maxLine();
    const base = this.#readAt;
    const inode = this.#file!.inode;
    this.#readAt += data.length;
    let start = 0;
    for (;;) {
      const nl = data.indexOf(10, start);
      if (nl === -1) break;
      if (this.#skip) this.#skip = false;
      else if (this.#partialBytes === 0) this.#emit(data, start, nl, max, inode, base + nl + 1, false);
      else {
        const line = this.#joined(data.subarray(start, nl));
        this.#emit(line, 0, line.length, max, inode, base + nl + 1, false);
      }
      if (this.#partial.length > 0) this.#clearPartial();
      start = nl + 1;
    }
    if (start === data.length || this.#skip) return;
    const rest = data.subarray(start);
    // Keep at most one line's worth: past max_line_size the line is cut now and its tail skipped.
    if (this.#partialBytes + rest.length > max) {
      const head = this.#joined(rest.subarray(0, Math.max(0, max + 1 - this.#partialBytes)));
      this.#clearPartial();
      this.#skip = true;
      this.#emit(head, 0, head.length, max, inode, this.#readAt, true);
      return;
    }
    this.#partial.push(Buffer.from(rest));
    this.#partialBytes += rest.length;
  }

  /** A last line without a newline counts once its file is done (rotated or removed). */
  #endOfFile(): void {
    if (this.#partialBytes > 0 && !this.#skip) {
      const line = this.#joined(Buffer.alloc(0));
      this.#emit(line, 0, line.length, this.maxLine(), this.#file!.inode, this.#readAt, false);
    }
    this.#clearPartial();
    this.#skip = false;
  }

  #joined(tail: Buffer): Buffer {
    return this.#partialBytes === 0 ? tail : Buffer.concat([...this.#partial, tail]);
  }

  #clearPartial(): void {
    this.#partial = [];
    this.#partialBytes = 0;
  }

  /** The line in bytes[start, end): decoded straight from the read buffer (no Buffer view per line). */
  #emit(bytes: Buffer, start: number, end: number, max: number, inode: string, offset: number, skip: boolean): void {
    if (end > start && bytes[end - 1] === 13) end--;
    if (end === start) return;
    const text = end - start <= max ? cutText(bytes.toString("utf8", start, end), max) : cutBytes(bytes.subarray(start, end), max);
    this.sink.line(text, inode, offset, skip);
  }
}
