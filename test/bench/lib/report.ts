import type { BenchResult } from "../registry.js";

// The runner (main.ts) prints the one result a benchmark returns, rounded to 0.1. Benchmarks
// that report two figures (a p50 and a p99) print the first one here, in the same shape, and
// return the second; sub-millisecond figures keep `digits` decimals instead of one.

export function printResult(r: BenchResult, digits = 3): void {
  const round = (x: number, d: number) => Math.round(x * 10 ** d) / 10 ** d;
  process.stdout.write(
    `${JSON.stringify({ name: r.name, value: round(r.value, digits), unit: r.unit, floor: r.floor === null ? null : round(r.floor, digits), ratio: r.ratio === null ? null : round(r.ratio, 3), target: r.target })}\n`,
  );
}
