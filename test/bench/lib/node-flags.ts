// Extra node flags for the processes benchmarks start, so the effect of a V8 setting on a
// figure is measured with the benchmark itself, without touching how the product starts them.
// Both are split on spaces, e.g. PLEXD_BENCH_AGENT_FLAGS="--max-semi-space-size=1 --no-opt".

const split = (v: string | undefined): string[] => (v ?? "").split(" ").filter((f) => f !== "");

/** For every benchmark privhelper (and the floor it is compared with): PLEXD_BENCH_PRIVHELPER_FLAGS. */
export const privhelperNodeFlags = (): string[] => split(process.env.PLEXD_BENCH_PRIVHELPER_FLAGS);

/** For every benchmark agent (`plexd up`) and the floor it is compared with: PLEXD_BENCH_AGENT_FLAGS. */
export const agentNodeFlags = (): string[] => split(process.env.PLEXD_BENCH_AGENT_FLAGS);
