import type { ServerResponse } from "node:http";
import type { Logger } from "pino";
import type { LoggedEvent } from "../state/eventlog.js";
import { newNonce, type SignedEnvelope } from "../state/signer.js";
import type { MockState } from "../state/store.js";

interface Stream {
  nodeId: string;
  res: ServerResponse;
  timer: NodeJS.Timeout | undefined;
}

export type DropMode = "end" | "destroy";

/** One frame exactly as it was written to a node's stream, for replaying it verbatim. */
export interface CapturedFrame {
  seq: number;
  event_id: string | undefined;
  event_type: string | undefined;
  bytes: number;
  /** The frame's text; empty when it was too large to keep. */
  frame: string;
}

/** Frames kept per node (the newest): enough for a test's replay rounds, bounded memory. */
const capturedPerNode = 5000;
/** Larger frames are listed but not kept: replaying them is what bad-events `oversize` is for. */
const maxCapturedFrameBytes = 64 * 1024;

/**
 * Open SSE streams per node. Every transmission is signed afresh
 * (new issued_at, nonce, signature), which is also what makes replays verify.
 */
export class StreamHub {
  readonly #state: MockState;
  readonly #keepaliveMs: number;
  readonly #log: Logger;
  readonly #streams = new Set<Stream>();
  /** Last envelope transmitted to each node, for the reused_nonce / duplicate_id bad events. */
  readonly lastSent = new Map<string, SignedEnvelope>();
  /**
   * Every frame written to each node's streams, signed events and raw ones alike, as an
   * attacker on the path would have captured them (replayCaptured sends them again as they are).
   */
  readonly #captured = new Map<string, CapturedFrame[]>();
  #captureSeq = 0;

  constructor(state: MockState, opts: { keepaliveMs: number; log: Logger }) {
    this.#state = state;
    this.#keepaliveMs = opts.keepaliveMs;
    this.#log = opts.log;
    state.onEvent((nodeId, ev) => this.#deliver(nodeId, ev));
  }

  /** Starts a stream on `res` (already authenticated), replaying after `lastEventId` when known. */
  open(nodeId: string, res: ServerResponse, lastEventId: string | undefined): void {
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    res.flushHeaders();
    const stream: Stream = { nodeId, res, timer: undefined };
    this.#streams.add(stream);
    const cleanup = (): void => {
      clearTimeout(stream.timer);
      this.#streams.delete(stream);
    };
    res.on("close", cleanup);
    res.socket?.setNoDelay(true);
    this.#armKeepalive(stream);
    const node = this.#state.nodes.get(nodeId);
    const replay = lastEventId === undefined || node === undefined ? undefined : node.events.after(lastEventId, this.#state.now());
    this.#log.debug({ nodeId, lastEventId, replay: replay?.length ?? 0 }, "sse stream opened");
    for (const ev of replay ?? []) this.#sendEvent(stream, ev);
  }

  #armKeepalive(stream: Stream): void {
    clearTimeout(stream.timer);
    // A comment whenever keepaliveMs pass with nothing else sent.
    stream.timer = setTimeout(() => {
      this.#write(stream, ": keepalive\n\n");
    }, this.#keepaliveMs);
    stream.timer.unref();
  }

  #write(stream: Stream, frame: string): void {
    if (stream.res.writableEnded || stream.res.destroyed) return;
    stream.res.write(frame);
    this.#armKeepalive(stream);
  }

  /** Signs `ev` with the active key, fresh issued_at and nonce, and writes it. */
  #sendEvent(stream: Stream, ev: LoggedEvent): void {
    const now = this.#state.now();
    const env = (ev.signWith ?? this.#state.keys.signer(now)).signEnvelope({
      event_type: ev.event_type,
      event_id: ev.event_id,
      issued_at: new Date(now).toISOString(),
      nonce: newNonce(),
      payload: ev.payload,
    });
    this.lastSent.set(stream.nodeId, env);
    this.#writeCaptured(stream, env.event_id, env.event_type, frame(env.event_id, env.event_type, JSON.stringify(env)));
  }

  #writeCaptured(stream: Stream, id: string | undefined, eventType: string | undefined, text: string): void {
    if (stream.res.writableEnded || stream.res.destroyed) return;
    this.#write(stream, text);
    let list = this.#captured.get(stream.nodeId);
    if (list === undefined) this.#captured.set(stream.nodeId, (list = []));
    list.push({ seq: ++this.#captureSeq, event_id: id, event_type: eventType, bytes: Buffer.byteLength(text), frame: text.length > maxCapturedFrameBytes ? "" : text });
    if (list.length > capturedPerNode) list.splice(0, list.length - capturedPerNode);
  }

  /** The frames captured for a node, oldest first. */
  captured(nodeId: string): readonly CapturedFrame[] {
    return this.#captured.get(nodeId) ?? [];
  }

  /**
   * Writes captured frames again, byte for byte (same id, nonce, issued_at and signature), to
   * the node's open streams; `seqs` picks them (default all), in the order given. Returns how
   * many frames were written and to how many streams.
   */
  replayCaptured(nodeId: string, seqs?: readonly number[]): { frames: number; streams: number } {
    const all = this.captured(nodeId);
    const bySeq = new Map(all.map((f) => [f.seq, f]));
    const picked = (seqs === undefined ? all : seqs.map((q) => bySeq.get(q))).filter((f): f is CapturedFrame => f !== undefined && f.frame !== "");
    const text = picked.map((f) => f.frame).join("");
    let streams = 0;
    for (const s of this.#streams) {
      if (s.nodeId !== nodeId || text === "") continue;
      this.#write(s, text);
      streams++;
    }
    return { frames: picked.length, streams };
  }

  #deliver(nodeId: string, ev: LoggedEvent): void {
    for (const s of this.#streams) if (s.nodeId === nodeId) this.#sendEvent(s, ev);
  }

  /** Writes an arbitrary data line (deliberately bad envelopes); returns how many streams got it. */
  sendRaw(nodeId: string, id: string | undefined, eventType: string | undefined, data: string): number {
    let n = 0;
    for (const s of this.#streams) {
      if (s.nodeId !== nodeId) continue;
      this.#writeCaptured(s, id, eventType, frame(id, eventType, data));
      n++;
    }
    return n;
  }

  count(nodeId: string): number {
    let n = 0;
    for (const s of this.#streams) if (s.nodeId === nodeId) n++;
    return n;
  }

  /** Closes a node's streams: `end` finishes the response cleanly, `destroy` resets the socket. */
  drop(nodeId: string | undefined, mode: DropMode = "end"): number {
    let n = 0;
    for (const s of [...this.#streams]) {
      if (nodeId !== undefined && s.nodeId !== nodeId) continue;
      clearTimeout(s.timer);
      this.#streams.delete(s);
      if (mode === "destroy") s.res.destroy();
      else s.res.end();
      n++;
    }
    return n;
  }
}

function frame(id: string | undefined, eventType: string | undefined, data: string): string {
  return `${id === undefined ? "" : `id: ${id}\n`}${eventType === undefined ? "" : `event: ${eventType}\n`}data: ${data}\n\n`;
}
