import { copyFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { nextSeq } from "./cleanup.js";
import { RUN_PREFIX } from "./runId.js";

// Process logs live in the test's temp dir and vanish with it on success. When a test fails
// they are copied to a directory that survives, and their tails are printed, so a CI log
// alone explains the failure.

interface LogRecord {
  seq: number;
  name: string;
  path: string;
}

const records: LogRecord[] = [];

export function registerLog(name: string, path: string): void {
  records.push({ seq: nextSeq(), name, path });
}

/** Where logs of failed tests of this run are kept. */
export function keptLogsRoot(): string {
  return join(tmpdir(), "plexd-e2e-logs", RUN_PREFIX);
}

function slug(label: string): string {
  return label.replace(/[^A-Za-z0-9_.-]+/g, "_").slice(0, 80) || "test";
}

function tail(text: string, lines: number): string {
  const all = text.split("\n");
  if (all.length > 0 && all[all.length - 1] === "") all.pop();
  return all.slice(-lines).join("\n");
}

/**
 * Copies every log registered after `mark` to `keptLogsRoot()/<label>/` and prints the last
 * `tailLines` lines of each. Returns the kept paths.
 */
export function preserveLogsSince(mark: number, label: string, tailLines = 40): string[] {
  const mine = records.filter((r) => r.seq > mark && existsSync(r.path));
  if (mine.length === 0) return [];
  const dir = join(keptLogsRoot(), slug(label));
  mkdirSync(dir, { recursive: true });
  const kept: string[] = [];
  for (const r of mine) {
    const dest = join(dir, basename(r.path));
    copyFileSync(r.path, dest);
    kept.push(dest);
    const text = readFileSync(r.path, "utf8");
    console.error(`\n[harness] ---- ${r.name}: last ${tailLines} lines (full log: ${dest}) ----\n${tail(text, tailLines)}\n[harness] ---- end ${r.name} ----`);
  }
  return kept;
}

/** Drops bookkeeping for logs registered after `mark` (their files go with their temp dirs). */
export function forgetLogsSince(mark: number): void {
  for (let i = records.length - 1; i >= 0; i--) {
    if ((records[i]?.seq ?? 0) > mark) records.splice(i, 1);
  }
}
