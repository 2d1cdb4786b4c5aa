import { serveAnsweringPriv, serveFlag } from "./lib/answering-priv.js";
import { relayChildFlag, runRelayChild } from "./lib/relay-child.js";
import { benchmarks, type BenchResult } from "./registry.js";

// `npm run bench [-- NAME...]`: runs every registered benchmark, or the named ones, and prints
// one JSON object per benchmark on stdout (docs/testing.md#performance-targets). Progress and errors go to stderr.
// Exit status: 0 if every benchmark ran, 1 if one failed to run, 2 for an unknown name.
// Missing a target is reported in the JSON, not through the exit status.

async function main(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h") || argv.includes("--list")) {
    for (const [name, b] of Object.entries(benchmarks)) process.stderr.write(`${name}\t${b.description}\n`);
    return 0;
  }
  const names = argv.length > 0 ? argv : Object.keys(benchmarks);
  const unknown = names.filter((n) => !(n in benchmarks));
  if (unknown.length > 0) {
    process.stderr.write(`unknown benchmark(s): ${unknown.join(", ")}; available: ${Object.keys(benchmarks).join(", ")}\n`);
    return 2;
  }
  const ac = new AbortController();
  const onSignal = (): void => ac.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let failed = 0;
  for (const name of names) {
    const bench = benchmarks[name];
    if (bench === undefined || ac.signal.aborted) continue;
    process.stderr.write(`[${name}] ${bench.description}\n`);
    try {
      const r: BenchResult = await bench.run({ signal: ac.signal, progress: (m) => process.stderr.write(`[${name}] ${m}\n`) });
      process.stdout.write(
        `${JSON.stringify({ name: r.name, value: round(r.value), unit: r.unit, floor: r.floor === null ? null : round(r.floor), ratio: r.ratio === null ? null : round(r.ratio, 3), target: r.target, ...roundAll(r.extra ?? {}) })}\n`,
      );
    } catch (err) {
      failed++;
      process.stderr.write(`[${name}] failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    }
  }
  process.off("SIGINT", onSignal);
  process.off("SIGTERM", onSignal);
  return failed > 0 ? 1 : 0;
}

function roundAll(fields: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, round(v)]));
}

function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

if (process.argv[2] === serveFlag) await serveAnsweringPriv(process.argv[3] ?? "");
else if (process.argv[2] === relayChildFlag) await runRelayChild(Number(process.argv[3]));
else process.exitCode = await main(process.argv.slice(2));
