import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createEventStreamDecoder, type SseFrame } from "./sse-decoder.js";

// The decoder's own rule on top of the W3C framing (sse.test.ts covers that over HTTP): an event
// over the cap is skipped and reported by id, whatever the line endings and chunk boundaries.

function decode(chunks: string[], max: number): SseFrame[] {
  const out: SseFrame[] = [];
  const d = createEventStreamDecoder({ maxEventChars: max, onFrame: (f) => out.push(f) });
  for (const c of chunks) d.push(Buffer.from(c, "utf8"));
  d.end();
  return out;
}

const eol = ["\n", "\r\n", "\r"] as const;

describe("createEventStreamDecoder", () => {
  it("reports an oversize event by its id and keeps the events around it, for every line ending", () => {
    for (const nl of eol) {
      const text = [`id: a${nl}data: small${nl}${nl}`, `id: big${nl}event: x${nl}data: ${"x".repeat(500)}${nl}data: more${nl}${nl}`, `: comment${nl}id: c${nl}data: after${nl}${nl}`].join("");
      const frames = decode([text], 100);
      expect(frames.map((f) => ("data" in f ? ["data", f.id, f.data] : ["oversize", f.id]))).toEqual([
        ["data", "a", "small"],
        ["oversize", "big"],
        ["data", "c", "after"],
      ]);
    }
  });

  it("gives the same frames for any chunking (property)", () => {
    const event = fc.record({
      id: fc.option(fc.stringMatching(/^[a-z0-9_]{1,12}$/), { nil: undefined }),
      size: fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 150, max: 400 })),
      nl: fc.constantFrom(...eol),
      idAfterData: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(event, { minLength: 1, maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 50 }), { maxLength: 30 }), (events, cuts) => {
        const text = events
          .map((e) => {
            const id = e.id === undefined ? "" : `id: ${e.id}${e.nl}`;
            const data = `data: ${"d".repeat(e.size)}${e.nl}`;
            return (e.idAfterData ? data + id : id + data) + e.nl;
          })
          .join("");
        const want = decode([text], 120);
        const chunks: string[] = [];
        let at = 0;
        for (const n of cuts) {
          if (at >= text.length) break;
          chunks.push(text.slice(at, at + n));
          at += n;
        }
        chunks.push(text.slice(at));
        expect(decode(chunks, 120)).toEqual(want);
        // And the frames are what was sent: small events whole, big ones by id.
        expect(want.map((f) => ("data" in f ? f.data.length : -1))).toEqual(events.map((e) => (e.size + 6 + (e.id === undefined ? 0 : e.id.length + 5) + 3 > 120 ? -1 : e.size)));
        for (const [i, f] of want.entries()) if ("oversize" in f) expect(f.id).toBe(events[i]!.id);
      }),
      { numRuns: 2000 },
    );
  });
});
