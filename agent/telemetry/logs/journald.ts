// journald through `journalctl --follow --output=json` (the agent's user is in group
// systemd-journal; no privhelper involved). It resumes after the committed cursor, or starts
// at "now" on the very first start; a journalctl that exits is started again after the last
// cursor read, so a restart of journalctl neither repeats nor skips an entry.
import { createInterface } from "node:readline";
import { execa } from "execa";
import { pause } from "../../../proto/lib/timers.js";
import { cutText, journalText, severityOf, type LogEntry } from "./entry.js";
import type { JournalFilter } from "./filters.js";

export interface JournalSink {
  entry(e: LogEntry, cursor: string): void;
}

export interface JournalOptions {
  /** The committed cursor to resume after; undefined on the very first start. */
  cursor: string | undefined;
  filter: () => JournalFilter;
  hostname: string;
  maxLine: () => number;
  sink: JournalSink;
  signal: AbortSignal;
  onProblem(text: string): void;
  /** For tests: another journalctl (the directory of a started journald, say). */
  journalctl?: { file: string; args: string[] };
  restartDelayMs?: number;
}

/** journalctl's arguments: argv only, never a shell. */
export function journalArgs(cursor: string | undefined): string[] {
  return ["--follow", "--output=json", "--all", "--no-pager", ...(cursor === undefined ? ["--lines=0"] : [`--after-cursor=${cursor}`])];
}

/** One journalctl JSON line to an entry, or undefined when the line is not one or the filters drop it. */
export function entryOf(line: string, o: Pick<JournalOptions, "hostname"> & { filter: JournalFilter; maxLine: number }): { entry?: LogEntry; cursor?: string } {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return {};
  }
  const cursor = typeof doc.__CURSOR === "string" ? doc.__CURSOR : undefined;
  const unit = journalText(doc._SYSTEMD_UNIT);
  const p = journalText(doc.PRIORITY);
  const priority = /^[0-7]$/.test(p) ? Number(p) : 6;
  if (!o.filter.keep(unit, priority)) return cursor === undefined ? {} : { cursor };
  const us = Number(journalText(doc.__REALTIME_TIMESTAMP));
  const timestamp = new Date(Number.isFinite(us) && us > 0 ? Math.floor(us / 1000) : Date.now()).toISOString();
  const raw = journalText(doc.MESSAGE);
  const message = cutText(raw, o.maxLine);
  const entry: LogEntry = { timestamp, source: "journald", unit, message, severity: severityOf(p), hostname: o.hostname };
  return cursor === undefined ? { entry } : { entry, cursor };
}

/** Follows the journal until `signal` aborts. */
export async function followJournal(o: JournalOptions): Promise<void> {
  let cursor = o.cursor;
  while (!o.signal.aborted) {
    const cmd = o.journalctl ?? { file: "journalctl", args: [] };
    const child = execa(cmd.file, [...cmd.args, ...journalArgs(cursor)], { buffer: false, stdin: "ignore", stderr: "pipe", cancelSignal: o.signal, reject: false });
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => {
      if (stderr.length < 2000) stderr += d.toString();
    });
    const lines = createInterface({ input: child.stdout!, crlfDelay: Infinity });
    for await (const line of lines) {
      const r = entryOf(line, { hostname: o.hostname, filter: o.filter(), maxLine: o.maxLine() });
      if (r.cursor !== undefined) {
        if (r.entry !== undefined) o.sink.entry(r.entry, r.cursor);
        cursor = r.cursor;
      }
    }
    const res = await child;
    if (o.signal.aborted) return;
    o.onProblem(`journalctl exited (${res.exitCode ?? res.signal ?? "?"}): ${stderr.trim().slice(0, 300) || "no output"}; starting it again`);
    await pause(o.restartDelayMs ?? 5000, o.signal);
  }
}
