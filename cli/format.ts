import { toJson, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";

// Output helpers shared by the client commands and `plexd top`. `-o json` prints exactly the
// response message JSON with the node API's conventions (proto field names, defaults
// emitted; docs/node-api.md); text output is for people and may change.

export const jsonOptions = { useProtoFieldName: true, alwaysEmitImplicit: true } as const;

export function messageJson<D extends DescMessage>(schema: D, msg: MessageShape<D>): string {
  return JSON.stringify(toJson(schema, msg, jsonOptions), null, 2);
}

/** "5s", "3m", "2h", "4d" — coarse on purpose, for ages in tables. */
export function shortDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60 > 0 && s < 600 ? `${s % 60}s` : ""}`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60) > 0 ? `${Math.floor((s % 3600) / 60)}m` : ""}`;
  return `${Math.floor(s / 86_400)}d`;
}

export function age(ts: Timestamp | undefined, now: number): string {
  return ts === undefined ? "never" : `${shortDuration(now - timestampMs(ts))} ago`;
}

export function bytes(n: bigint | number): string {
  const v = Number(n);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let x = v;
  let i = 0;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${x.toFixed(x < 10 ? 1 : 0)} ${units[i]}`;
}

export function rate(bytesPerSecond: number | undefined): string {
  return bytesPerSecond === undefined ? "-" : `${bytes(Math.round(bytesPerSecond))}/s`;
}

/** Left-aligned columns separated by two spaces; widths from the content. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}
