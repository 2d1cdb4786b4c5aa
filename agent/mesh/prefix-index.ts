import type { Cidr } from "../../proto/lib/net.js";

// Which admitted peer holds an address range. Admission refuses any overlap between two peers,
// so the ranges held here never overlap: kept sorted by their first address, the only range
// that can overlap a query is the last one starting at or before the query's end. Lookups are
// a binary search, so admitting a peer costs the same at 10,000 peers as at 100.

interface Range {
  lo: bigint;
  hi: bigint;
  owner: string;
  cidr: string;
}

const hostBits = (c: Pick<Cidr, "family" | "bits">): bigint => (1n << BigInt((c.family === 4 ? 32 : 128) - c.bits)) - 1n;

export class PrefixIndex {
  readonly #ranges: Record<4 | 6, Range[]> = { 4: [], 6: [] };

  /** Index of the last range with lo <= `at`, or -1. */
  #lastStartingBy(list: Range[], at: bigint): number {
    let lo = 0;
    let hi = list.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid]!.lo <= at) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  /** The holder of a range overlapping `c` and its prefix, if any. */
  overlapping(c: Cidr): { owner: string; cidr: string } | undefined {
    const list = this.#ranges[c.family];
    const hi = c.value | hostBits(c);
    const r = list[this.#lastStartingBy(list, hi)];
    return r !== undefined && r.hi >= c.value ? { owner: r.owner, cidr: r.cidr } : undefined;
  }

  /** Records `c` for `owner`; the caller has checked that nothing overlaps it. */
  add(c: Cidr, owner: string): void {
    const list = this.#ranges[c.family];
    const at = this.#lastStartingBy(list, c.value) + 1;
    list.splice(at, 0, { lo: c.value, hi: c.value | hostBits(c), owner, cidr: c.cidr });
  }

  remove(c: Cidr, owner: string): void {
    const list = this.#ranges[c.family];
    const i = this.#lastStartingBy(list, c.value);
    if (i >= 0 && list[i]!.lo === c.value && list[i]!.owner === owner) list.splice(i, 1);
  }

  get size(): number {
    return this.#ranges[4].length + this.#ranges[6].length;
  }
}

/**
 * The prefixes of one peer that are not inside another of its own: a peer may list both
 * 10.1.0.0/16 and 10.1.2.0/24 (WireGuard routes by longest match within the peer), and only the
 * outer one needs to be held against other peers.
 */
export function outermost(prefixes: readonly Cidr[]): Cidr[] {
  const sorted = [...prefixes].sort((a, b) => a.family - b.family || (a.value < b.value ? -1 : a.value > b.value ? 1 : a.bits - b.bits));
  const out: Cidr[] = [];
  for (const c of sorted) {
    const last = out.at(-1);
    if (last !== undefined && last.family === c.family && c.value <= (last.value | hostBits(last))) continue;
    out.push(c);
  }
  return out;
}
