/**
 * Waits `ms`, or less when `signal` aborts; never rejects. For loops that check the signal
 * themselves after waking (a poll interval, a retry pause), where an abort is not an error.
 */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
