// Small statistics for benchmark samples. Percentiles are nearest-rank (the value of an
// actual sample, never interpolated), so a p99 over 100 samples is the second-worst one.

export function median(xs: readonly number[]): number {
  return percentile(xs, 50);
}

/** Nearest-rank percentile, p in (0, 100]. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) throw new Error("percentile of no samples");
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length, Math.max(1, rank)) - 1]!;
}

export function mean(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** "p50 1.23 / p90 … / max …" for progress lines. */
export function summary(xs: readonly number[], digits = 1): string {
  const f = (x: number) => x.toFixed(digits);
  return `n=${xs.length} min ${f(Math.min(...xs))} p50 ${f(percentile(xs, 50))} p90 ${f(percentile(xs, 90))} p99 ${f(percentile(xs, 99))} max ${f(Math.max(...xs))}`;
}
