import { createParser, type EventSourceParser } from "eventsource-parser";

// Bytes → SSE events: UTF-8 decoding plus eventsource-parser (full W3C rules). Kept apart from
// the HTTP code so the fuzz suite drives exactly what the client runs.
//
// One addition of ours: an event larger than the cap is skipped, not fatal. A control plane
// keeps events for replay (docs/architecture.md#the-control-plane-channel), so ending the stream on a huge one would
// bring it back on every reconnect and pin the node in a reconnect loop. A light scan over the
// text, ahead of the parser, counts each event's size and notes its `id:` line; once an event
// is over the cap the parser forgets it and the rest of it is dropped up to the blank line that
// ends it, and the caller learns its id (to record it as handled and pull the full state).

/** One event as delivered: its data, or — when it was over the cap — only its id and size. */
export type SseFrame = { data: string; id: string | undefined } | { oversize: number; id: string | undefined };

export interface EventStreamDecoder {
  /** Feeds raw body bytes; chunk boundaries may fall anywhere, inside UTF-8 sequences too. */
  push(chunk: Uint8Array): void;
  /**
   * End of body. A final CR is only known to be a line end once nothing follows it, which the
   * parser cannot see; this completes it so an event ending in CR CR is not lost at EOF.
   */
  end(): void;
}

/** Longest `id:` line value kept for an oversize event; longer ids cannot be Last-Event-IDs anyway. */
const maxIdChars = 1024;
const CR = 13;
const LF = 10;

export function createEventStreamDecoder(h: {
  onFrame: (frame: SseFrame) => void;
  onComment?: () => void;
  /** Cap on one event in characters (all its lines and line ends). */
  maxEventChars: number;
}): EventStreamDecoder {
  // TextDecoder (not StringDecoder) because it drops a leading BOM, as the W3C decode step
  // requires; eventsource-parser's own BOM check looks for the undecoded bytes EF BB BF.
  const text = new TextDecoder("utf-8");
  let skipping = false;
  const parser: EventSourceParser = createParser({
    // Never reached while the scan below works (it resets the parser first); a safety net.
    maxBufferSize: h.maxEventChars + 1024 * 1024,
    onEvent: (m) => h.onFrame({ data: m.data, id: m.id }),
    onComment: () => h.onComment?.(),
    onError: (e) => {
      // Unknown fields and a bad `retry:` are ignored by the W3C rules.
      if (e.type === "max-buffer-size-exceeded") skipping = true;
    },
  });

  // The scan's view of the current event and line.
  let eventChars = 0;
  let lineChars = 0;
  let line = ""; // the current line's first characters, enough to recognise an id field
  let eventId: string | undefined;
  let lfEndsLine = true; // false right after a CR: a following LF is part of CRLF
  let lastCharCR = false;
  let ended = false;

  const endOfLine = (): boolean => {
    const blank = lineChars === 0;
    if (!blank) {
      // W3C field parsing: "id" alone, or "id:" with one optional space stripped.
      if (line === "id") eventId = "";
      else if (line.startsWith("id:") && lineChars === line.length) eventId = line.charCodeAt(3) === 32 ? line.slice(4) : line.slice(3);
    }
    lineChars = 0;
    line = "";
    return blank;
  };

  const scan = (s: string): void => {
    lastCharCR = s.charCodeAt(s.length - 1) === CR;
    let feedFrom = skipping ? -1 : 0; // where the parser's part of `s` starts; -1 while skipping
    // Where the current event starts within `s` (-1: in an earlier chunk).
    let eventStart = eventChars === 0 && lineChars === 0 ? 0 : -1;
    let i = 0;
    const overflow = (): void => {
      if (skipping) return;
      skipping = true;
      // The events before this one are whole: the parser gets them, then forgets the rest. A
      // final CR is a line end the parser would hold back, waiting for a possible LF.
      if (feedFrom >= 0 && eventStart >= feedFrom) {
        if (eventStart > feedFrom) parser.feed(s.slice(feedFrom, eventStart));
        if (eventStart > 0 && s.charCodeAt(eventStart - 1) === CR) parser.feed("\n");
      }
      parser.reset();
      feedFrom = -1;
    };
    while (i < s.length) {
      const c = s.charCodeAt(i);
      if (c === LF && !lfEndsLine) {
        // The LF of a CRLF whose CR ended the line already (in the chunk before, when it
        // ended an event: the next event starts after it).
        lfEndsLine = true;
        if (eventChars === 0 && lineChars === 0) {
          eventStart = i + 1;
          // The parser had the event completed with an LF of ours (below); not this one too.
          if (feedFrom === i) feedFrom = i + 1;
        } else eventChars++;
        i++;
        continue;
      }
      lfEndsLine = true;
      if (c === CR || c === LF) {
        if (c === CR) lfEndsLine = false;
        const blank = endOfLine();
        i++;
        if (blank) {
          // A CRLF's LF belongs to this line end; the next event starts after it.
          if (!lfEndsLine && s.charCodeAt(i) === LF) {
            lfEndsLine = true;
            i++;
          }
          if (skipping) {
            h.onFrame({ oversize: eventChars, id: eventId });
            skipping = false;
            parser.reset();
            feedFrom = i;
          }
          eventChars = 0;
          eventId = undefined;
          eventStart = i;
        } else {
          eventChars++;
          if (eventChars > h.maxEventChars) overflow();
        }
        continue;
      }
      // A run of ordinary characters up to the next line end.
      let j = i;
      while (j < s.length) {
        const d = s.charCodeAt(j);
        if (d === CR || d === LF) break;
        j++;
      }
      if (line.length <= maxIdChars + 4) line += s.slice(i, Math.min(j, i + maxIdChars + 5 - line.length));
      lineChars += j - i;
      eventChars += j - i;
      if (eventChars > h.maxEventChars) overflow();
      i = j;
    }
    if (feedFrom >= 0 && feedFrom < s.length) {
      parser.feed(feedFrom === 0 ? s : s.slice(feedFrom));
      // A CR that ends an event at the very end of a chunk: the parser would hold it back until
      // it knows whether an LF follows, and a later reset() would lose the whole event.
      if (lastCharCR && !lfEndsLine && eventChars === 0 && lineChars === 0) parser.feed("\n");
    }
  };

  return {
    push(chunk) {
      if (ended) return;
      const s = text.decode(chunk, { stream: true });
      if (s.length > 0) scan(s);
    },
    end() {
      if (ended) return;
      ended = true;
      // Bytes of an unfinished UTF-8 sequence can only belong to an unterminated line, which
      // the W3C rules discard at EOF anyway; so the decoder's tail is dropped.
      text.decode();
      // CR + LF is one line end, so this adds no extra blank line.
      if (lastCharCR && !skipping) parser.feed("\n");
    },
  };
}
