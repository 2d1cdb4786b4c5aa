// One process-wide registry of disposers. Every resource the harness creates (namespace,
// interface, process, temp dir) registers one here *before* it is used, so whatever way a
// test ends — pass, assertion failure, timeout, uncaught exception, SIGINT/SIGTERM, process
// exit — the resource is removed. Disposers run newest first and a failing one never stops
// the rest.

export interface CleanupHandle {
  readonly id: number;
  readonly label: string;
  /** Run this disposer now (once); later cleanups skip it. */
  dispose(): Promise<void>;
  /** Forget the disposer without running it (the resource is gone by other means). */
  unregister(): void;
}

interface Entry {
  readonly id: number;
  readonly label: string;
  readonly fn: () => Promise<void>;
  readonly syncFn: (() => void) | undefined;
  running: Promise<void> | undefined;
}

/** Bound for one disposer: a hung disposer must not keep the others (or the test run) hostage. */
const DISPOSER_TIMEOUT_MS = 20_000;

const entries = new Map<number, Entry>();
let seq = 0;
let handlersInstalled = false;

/** Monotonic sequence shared with other harness bookkeeping (log files) to define scopes. */
export function nextSeq(): number {
  seq += 1;
  return seq;
}

/** A point in time: `cleanupSince(mark)` disposes everything registered after it. */
export function cleanupMark(): number {
  return seq;
}

export function registerCleanup(label: string, fn: () => Promise<void>, syncFn?: () => void): CleanupHandle {
  installExitHandlers();
  const entry: Entry = { id: nextSeq(), label, fn, syncFn, running: undefined };
  entries.set(entry.id, entry);
  return {
    id: entry.id,
    label,
    dispose: () => runEntry(entry),
    unregister: () => {
      entries.delete(entry.id);
    },
  };
}

/** Labels of disposers not yet run (what a cleanup would still remove). */
export function pendingCleanups(): { id: number; label: string }[] {
  return [...entries.values()].map((e) => ({ id: e.id, label: e.label }));
}

function runEntry(entry: Entry): Promise<void> {
  if (entry.running) return entry.running;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`cleanup of ${entry.label} timed out after ${DISPOSER_TIMEOUT_MS} ms`)), DISPOSER_TIMEOUT_MS);
    timer.unref();
  });
  entry.running = Promise.race([Promise.resolve().then(entry.fn), timeout]).finally(() => {
    clearTimeout(timer);
    entries.delete(entry.id);
  });
  return entry.running;
}

export class CleanupError extends Error {
  constructor(readonly failures: { label: string; error: unknown }[]) {
    super(`${failures.length} cleanup step(s) failed:\n` + failures.map((f) => `  ${f.label}: ${describe(f.error)}`).join("\n"));
    this.name = "CleanupError";
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Disposes everything registered after `mark`, newest first, continuing past errors.
 * Returns the failures (also printed to stderr); never throws.
 */
export function cleanupSince(mark: number): Promise<{ label: string; error: unknown }[]> {
  return cleanupRange(mark, Number.POSITIVE_INFINITY);
}

/** Like cleanupSince, limited to entries registered after `mark` and up to `until` (inclusive). */
export async function cleanupRange(mark: number, until: number): Promise<{ label: string; error: unknown }[]> {
  const failures: { label: string; error: unknown }[] = [];
  // Loop until stable: a disposer may (rarely) register something new, e.g. a late process.
  for (;;) {
    const batch = [...entries.values()].filter((e) => e.id > mark && e.id <= until).sort((a, b) => b.id - a.id);
    if (batch.length === 0) break;
    for (const entry of batch) {
      try {
        await runEntry(entry);
      } catch (error) {
        failures.push({ label: entry.label, error });
      }
    }
  }
  for (const f of failures) console.error(`[harness] cleanup failed: ${f.label}: ${describe(f.error)}`);
  return failures;
}

export function cleanupAll(): Promise<{ label: string; error: unknown }[]> {
  return cleanupSince(0);
}

/**
 * Synchronous best-effort cleanup for `process.on("exit")`, where no promise can run:
 * disposers that have a sync form use it; others are reported as skipped.
 */
export function cleanupAllSync(): void {
  const batch = [...entries.values()].sort((a, b) => b.id - a.id);
  for (const entry of batch) {
    entries.delete(entry.id);
    if (!entry.syncFn) {
      console.error(`[harness] exit: no synchronous cleanup for ${entry.label}`);
      continue;
    }
    try {
      entry.syncFn();
    } catch (error) {
      console.error(`[harness] exit cleanup failed: ${entry.label}: ${describe(error)}`);
    }
  }
}

/**
 * Runs `fn`; whatever it registered is disposed afterwards, also when it throws (the error is
 * rethrown after cleanup). Cleanup failures are thrown as CleanupError when `fn` succeeded.
 */
export async function withCleanupScope<T>(fn: () => Promise<T>): Promise<T> {
  const mark = cleanupMark();
  let result: T;
  try {
    result = await fn();
  } catch (error) {
    await cleanupSince(mark);
    throw error;
  }
  const failures = await cleanupSince(mark);
  if (failures.length > 0) throw new CleanupError(failures);
  return result;
}

function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.once("exit", cleanupAllSync);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    const onSignal = (): void => {
      process.removeListener(signal, onSignal);
      console.error(`[harness] ${signal}: cleaning up ${entries.size} resource(s)`);
      // cleanupAll reports failures in its result and never rejects.
      void cleanupAll().finally(() => {
        // Re-raise with the default action when nobody else handles the signal, so the
        // process still dies of it (exit status 128+n) after cleaning up.
        if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
      });
    };
    process.on(signal, onSignal);
  }
}
