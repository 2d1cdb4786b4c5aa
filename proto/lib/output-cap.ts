// Captured action output, capped per stream (docs/actions.md "Output"): at most `max` bytes,
// never cut inside a UTF-8 sequence, and a cut output ends with a marker that counts toward the
// limit. Shared by privhelper (which caps what crosses its socket) and the agent (built-ins).

export const truncatedMarker = "\n...[truncated]";

/** Appends chunks up to a byte limit, keeping only what can still be shown. */
export class CappedBuffer {
  readonly #max: number;
  readonly #chunks: Buffer[] = [];
  #bytes = 0;
  #over = false;

  constructor(max: number) {
    this.#max = max;
  }

  push(chunk: Buffer): void {
    // One byte past the limit is enough to know the output was cut.
    const room = this.#max + 1 - this.#bytes;
    if (room <= 0) {
      this.#over = true;
      return;
    }
    const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
    this.#chunks.push(part);
    this.#bytes += part.length;
  }

  text(): string {
    return capText(Buffer.concat(this.#chunks), this.#max, this.#over);
  }
}

/** `bytes` as text of at most `max` bytes (marker included when cut). */
export function capText(raw: Buffer, max: number, cut = false): string {
  // Decoded first: invalid bytes become U+FFFD (three bytes each), and the limit is on the text sent.
  const text = raw.toString("utf8");
  const bytes = Buffer.from(text, "utf8");
  if (!cut && bytes.length <= max) return text;
  const marker = Buffer.from(truncatedMarker);
  let end = Math.max(0, max - marker.length);
  // Step back over continuation bytes (10xxxxxx) to the start of the sequence they belong to,
  // and drop that start too when the whole sequence does not fit.
  if (end < bytes.length) {
    let start = end;
    while (start > 0 && (bytes[start]! & 0xc0) === 0x80) start--;
    end = start;
  }
  return bytes.subarray(0, end).toString("utf8") + truncatedMarker;
}
