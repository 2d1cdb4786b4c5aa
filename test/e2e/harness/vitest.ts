import { afterAll, afterEach, beforeEach } from "vitest";
import { cleanupAll, cleanupMark, cleanupSince, CleanupError } from "./cleanup.js";
import { forgetLogsSince, preserveLogsSince } from "./logs.js";

// The only harness module that imports vitest: the demo uses the rest outside a test runner.
export * from "./index.js";

export interface UseHarnessOptions {
  /** Lines of each process log printed when a test fails (default 40). */
  tailLines?: number;
}

/**
 * Registers the hooks: whatever a test creates is removed after it (pass, failure or
 * timeout — vitest runs afterEach after a timed-out test too); what `beforeAll` created is
 * removed in afterAll. Process exit and SIGINT/SIGTERM are covered by the registry itself.
 * On failure, the test's process logs are kept and their tails printed.
 */
export function useHarness(opts: UseHarnessOptions = {}): void {
  let mark = 0;
  beforeEach(() => {
    mark = cleanupMark();
  });
  afterEach(async (ctx) => {
    const failed = ctx.task.result?.state === "fail";
    if (failed) preserveLogsSince(mark, ctx.task.name, opts.tailLines ?? 40);
    const failures = await cleanupSince(mark);
    forgetLogsSince(mark);
    if (failures.length > 0 && !failed) throw new CleanupError(failures);
  });
  afterAll(async () => {
    const failures = await cleanupAll();
    forgetLogsSince(0);
    if (failures.length > 0) throw new CleanupError(failures);
  });
}
