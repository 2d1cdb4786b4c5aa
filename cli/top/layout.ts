// Fitting text to the terminal without wrapping or cutting a word: a line is a list of
// segments by priority, and the ones that do not fit are left out whole; a table keeps the
// columns that matter most and drops the rest whole.

export interface Segment {
  text: string;
  /** Lower first: priority 0 is always kept (and cut at the edge only if it alone is too wide). */
  priority: number;
}

/** The segments that fit `width` together (joined by `sep`), in their original order. */
export function fitSegments<T extends Segment>(segments: readonly T[], width: number, sep = "  "): T[] {
  const order = segments.map((s, i) => ({ s, i })).sort((a, b) => a.s.priority - b.s.priority || a.i - b.i);
  const kept = new Set<number>();
  let used = 0;
  for (const { s, i } of order) {
    const cost = s.text.length + (kept.size > 0 ? sep.length : 0);
    if (used + cost > width && s.priority > 0) continue;
    kept.add(i);
    used += cost;
  }
  return segments.filter((_, i) => kept.has(i));
}

export interface Column<R> {
  key: string;
  title: string;
  /** Lower is kept longer when the terminal is narrow. */
  priority: number;
  /** Widest a cell may be; longer content ends in "…". */
  max: number;
  cell: (row: R) => string;
  align?: "left" | "right";
}

export interface FittedColumn<R> extends Column<R> {
  width: number;
}

/** Column widths from the content, then as many columns by priority as fit `width` (1 space apart). */
export function fitColumns<R>(columns: readonly Column<R>[], rows: readonly R[], width: number, titleOf: (c: Column<R>) => string = (c) => c.title): FittedColumn<R>[] {
  const sized = columns.map((c) => ({ ...c, width: Math.max(titleOf(c).length, Math.min(c.max, Math.max(0, ...rows.map((r) => c.cell(r).length)))) }));
  const keep = new Set<string>();
  let used = 0;
  for (const c of [...sized].sort((a, b) => a.priority - b.priority)) {
    const cost = c.width + (keep.size > 0 ? 1 : 0);
    if (used + cost > width) continue;
    keep.add(c.key);
    used += cost;
  }
  return sized.filter((c) => keep.has(c.key));
}

export function pad(text: string, width: number, align: "left" | "right" = "left"): string {
  const t = text.length > width ? `${text.slice(0, Math.max(0, width - 1))}…` : text;
  return align === "right" ? t.padStart(width) : t.padEnd(width);
}
