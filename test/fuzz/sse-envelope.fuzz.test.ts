import { isDeepStrictEqual } from "node:util";
import { Writable } from "node:stream";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { Backoff } from "../../agent/controlplane/backoff.js";
import { EnvelopeVerifier, type Envelope } from "../../agent/controlplane/envelope.js";
import { nodeSigner, publicKeyB64FromSeed, seedRange, signEnvelope, type UnsignedEnvelope } from "../support/envelope-testkit.js";
import { runEventStream } from "../../agent/controlplane/event-stream.js";
import { nonceCacheCapacity, recentEventIdCapacity, ReplayGuard } from "../../agent/controlplane/replay.js";
import { createEventStreamDecoder, type SseFrame } from "../../agent/controlplane/sse-decoder.js";
import { TrustedSigningKeys } from "../../agent/controlplane/signing-keys.js";
import { abortError, type Clock } from "../../agent/util/clock.js";
import { createLogger } from "../../agent/util/log.js";
import { rng } from "../support/rng.js";

// Untrusted bytes → SSE decoder (eventsource-parser) → envelope verifier, the exact path of the
// agent. At least 100,000 streams: random bytes, SSE-shaped token soup, and mutations of valid
// signed streams (bit flips, byte edits, truncation, splicing, stray line endings, random
// chunking). Oracles: nothing throws, no unhandled rejection, nothing is accepted that we did
// not sign, untouched valid streams are accepted in full, caches stay at their caps, and heap
// growth stays bounded. The seed is random per run and printed with any failure;
// PLEXD_FUZZ_SEED replays a run.

const seed = Number(process.env.PLEXD_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const totalStreams = 100_000;
const T = Date.parse("2025-01-15T10:30:00Z");

const R = rng(seed);

const seed1 = seedRange(0);
const sign1 = nodeSigner(seed1);
const sign2 = nodeSigner(seedRange(0x20));
const eventTypes = ["peer_added", "peer_removed", "policy_updated", "action_request", "rotate_keys", "node_state_updated", "x_unknown"];
const strings = ["", "n_peer456", "ü€😀", "line\nbreak", 'q"uote\\', "\u0000\u001f", "<tag>&", "a".repeat(40)];

// Envelope fields are a pure function of (seed, serial, signer), and the serial is in the nonce,
// so the oracle regenerates what we signed instead of remembering it (which would itself grow
// the heap being measured).
let serial = 0;
function envelopeFields(n: number, signerTag: string): UnsignedEnvelope {
  const E = rng((seed ^ Math.imul(n, 0x9e3779b1)) >>> 0);
  const value = (depth: number): unknown => {
    switch (E.int(depth > 2 ? 4 : 6)) {
      case 0:
        return E.pick(strings);
      case 1:
        return E.pick([0, -1, 1.5, 1e21, 2 ** 53, -0.000001, 123456789]);
      case 2:
        return E.pick([true, false, null]);
      case 3:
        return E.pick(strings) + E.int(1000);
      case 4:
        return Array.from({ length: E.int(4) }, () => value(depth + 1));
      default:
        return Object.fromEntries(Array.from({ length: E.int(4) }, () => [E.pick(strings) + E.int(9), value(depth + 1)]));
    }
  };
  const fields: UnsignedEnvelope = {
    event_type: E.pick(eventTypes),
    event_id: `evt_${seed}_${n}`,
    issued_at: new Date(T + (E.int(590) - 295) * 1000).toISOString().replace(E.chance(0.5) ? ".000Z" : "\0", "Z"),
    nonce: `${signerTag}-${n}-${seed.toString(16)}`,
    payload: { v: value(0), peer_id: E.pick(strings) },
  };
  // JSON round trip so the signed value is exactly what a receiver parses (-0, etc.).
  return JSON.parse(JSON.stringify(fields)) as UnsignedEnvelope;
}

function freshEnvelope(signer = sign1): Envelope {
  serial++;
  return signEnvelope(envelopeFields(serial, signer === sign1 ? "k1" : "k2"), signer);
}

/** The fields we signed with the trusted key under this nonce, if any. */
function signedFor(nonce: string): UnsignedEnvelope | undefined {
  const m = /^k1-(\d+)-/.exec(nonce);
  return m === null ? undefined : envelopeFields(Number(m[1]), "k1");
}

// One SSE frame in a random but valid framing style.
function frame(env: Envelope): string {
  const eol = R.pick(["\n", "\r\n", "\r"]);
  const sp = R.chance(0.5) ? " " : "";
  let out = "";
  if (R.chance(0.3)) out += `:${sp}keepalive${eol}`;
  if (R.chance(0.8)) out += `id:${sp}${env.event_id}${eol}`;
  if (R.chance(0.5)) out += `event:${sp}${env.event_type}${eol}`;
  if (R.chance(0.1)) out += `retry:${sp}${R.int(5000)}${eol}`;
  const json = R.chance(0.2) ? JSON.stringify(env, null, 1) : JSON.stringify(env);
  for (const l of json.split("\n")) out += `data:${sp}${l}${eol}`;
  return out + eol;
}

function validStream(n: number): { bytes: Buffer; envs: Envelope[] } {
  const envs = Array.from({ length: n }, () => freshEnvelope());
  return { bytes: Buffer.from((R.chance(0.1) ? "\uFEFF" : "") + envs.map(frame).join(""), "utf8"), envs };
}

const corpus: Buffer[] = [];
function baseForMutation(): Buffer {
  if (corpus.length < 300 || R.chance(0.1)) {
    const b = validStream(1 + R.int(2)).bytes;
    if (corpus.length < 300) corpus.push(b);
    else corpus[R.int(corpus.length)] = b;
    return b;
  }
  return R.pick(corpus);
}

function mutate(src: Buffer): Buffer {
  let b = Buffer.from(src);
  const rounds = 1 + R.int(3);
  for (let r = 0; r < rounds; r++) {
    if (b.length === 0) b = Buffer.from("data: x\n\n");
    switch (R.int(8)) {
      case 0: // bit flips
        for (let i = 1 + R.int(8); i > 0; i--) {
          const p = R.int(b.length);
          b[p] = (b[p] as number) ^ (1 << R.int(8));
        }
        break;
      case 1: // byte replacement
        b[R.int(b.length)] = R.int(256);
        break;
      case 2: // truncation
        b = b.subarray(0, R.int(b.length));
        break;
      case 3: {
        // splice with another stream
        const other = R.pick(corpus.length > 0 ? corpus : [b]);
        b = Buffer.concat([b.subarray(0, R.int(b.length)), other.subarray(R.int(other.length))]);
        break;
      }
      case 4: {
        // stray line endings
        const p = R.int(b.length);
        b = Buffer.concat([b.subarray(0, p), Buffer.from(R.pick(["\n", "\r", "\r\n", "\n\n", "\r\r"])), b.subarray(p)]);
        break;
      }
      case 5: {
        // insert random bytes, invalid UTF-8 and NUL included
        const p = R.int(b.length);
        const ins = Buffer.from(Array.from({ length: 1 + R.int(6) }, () => R.pick([0x00, 0xff, 0xc3, 0xe2, 0xef, 0xbb, 0xbf, 0x22, 0x5c, 0x3a, R.int(256)])));
        b = Buffer.concat([b.subarray(0, p), ins, b.subarray(p)]);
        break;
      }
      case 6: {
        // delete a range
        const p = R.int(b.length);
        b = Buffer.concat([b.subarray(0, p), b.subarray(p + 1 + R.int(16))]);
        break;
      }
      default: {
        // duplicate a range (replayed frames, repeated fields)
        const p = R.int(b.length);
        const q = Math.min(b.length, p + 1 + R.int(200));
        b = Buffer.concat([b.subarray(0, q), b.subarray(p, q), b.subarray(q)]);
      }
    }
  }
  return b;
}

function randomBytes(): Buffer {
  return Buffer.from(Array.from({ length: R.int(512) }, () => R.int(256)));
}

const vocab = ["data:", "data: ", "id:", "id: ", "event: ", "retry: ", ": ", ":", "\n", "\r", "\r\n", "{", "}", '"', "event_type", "signature", "[", "1e999", "\uFEFF", "\u2028", "\\ud800", "null"];
function tokenSoup(): Buffer {
  return Buffer.from(Array.from({ length: R.int(80) }, () => (R.chance(0.8) ? R.pick(vocab) : R.pick(strings))).join(""), "utf8");
}

// An event bigger than the decoder's cap, or an envelope bigger than the verifier's.
function oversized(): Buffer {
  return Buffer.from(`data: {"event_type":"${"x".repeat(20_000 + R.int(50_000))}"}\n\n`);
}

function chunks(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let i = 0;
  // Byte-at-a-time only for ordinary sizes; a 70 KB oversized stream split per byte would spend
  // the whole time budget on one case.
  const style = b.length <= 2048 && R.chance(0.05) ? 0 : 1 + R.int(2);
  while (i < b.length) {
    const n = style === 0 ? 1 : style === 1 ? 1 + R.int(64) : 1 + R.int(b.length);
    out.push(b.subarray(i, i + n));
    i += n;
  }
  return out;
}

function getGc(): (() => void) | undefined {
  try {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as unknown;
    return typeof gc === "function" ? (gc as () => void) : undefined;
  } catch {
    return undefined;
  }
}

describe(`fuzz: SSE bytes → envelope verifier (seed ${seed})`, () => {
  it("survives 100,000 hostile streams with bounded state", { timeout: 120_000 }, async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown): void => {
      unhandled.push(e);
    };
    process.on("unhandledRejection", onUnhandled);
    const gc = getGc();
    try {
      const replay = new ReplayGuard();
      const verifier = new EnvelopeVerifier({ keys: TrustedSigningKeys.fromCurrent(publicKeyB64FromSeed(seed1)), replay, now: () => T, maxEnvelopeBytes: 32 * 1024 });
      let accepted = 0;
      let events = 0;
      let overflows = 0;
      let validFrames = 0;
      let validAccepted = 0;
      let heapBaseline = 0;
      const failures: string[] = [];

      const runOne = (bytes: Buffer, isValid: boolean, idx: number): void => {
        const decoder = createEventStreamDecoder({
          maxEventChars: 64 * 1024,
          onFrame: (f) => {
            if ("oversize" in f) {
              overflows++;
              return;
            }
            const data = f.data;
            events++;
            const r = verifier.verify(data);
            if (!r.ok) return;
            accepted++;
            if (isValid) validAccepted++;
            // The oracle: an accepted event is exactly one we signed with the trusted key.
            const orig = signedFor(r.envelope.nonce);
            const { signature: _sig, ...got } = r.envelope;
            if (orig === undefined || !isDeepStrictEqual(got, orig)) failures.push(`stream ${idx}: accepted an envelope we never signed: ${data.slice(0, 200)}`);
            verifier.markDispatched(r.envelope.event_id);
          },
        });
        for (const c of chunks(bytes)) decoder.push(c);
        decoder.end();
      };

      for (let i = 0; i < totalStreams; i++) {
        const kind = R.int(100);
        let bytes: Buffer;
        let isValid = false;
        if (kind < 10) {
          const v = validStream(1 + R.int(2));
          bytes = v.bytes;
          isValid = true;
          validFrames += v.envs.length;
        } else if (kind < 12) {
          bytes = Buffer.from(frame(freshEnvelope(sign2)));
        } else if (kind < 75) {
          bytes = mutate(baseForMutation());
        } else if (kind < 87) {
          bytes = randomBytes();
        } else if (kind < 99) {
          bytes = tokenSoup();
        } else {
          bytes = oversized();
        }
        try {
          runOne(bytes, isValid, i);
        } catch (err) {
          failures.push(`stream ${i} threw: ${String(err)}; bytes ${bytes.subarray(0, 200).toString("base64")}`);
        }
        if (failures.length > 5) break;
        if (i === 30_000) {
          gc?.();
          heapBaseline = process.memoryUsage().heapUsed;
        }
      }

      expect(failures, `seed ${seed}`).toEqual([]);
      expect(validAccepted, `seed ${seed}: untouched valid frames must all verify`).toBe(validFrames);
      expect(accepted).toBeGreaterThan(nonceCacheCapacity);
      expect(events).toBeGreaterThan(totalStreams / 2);
      expect(overflows).toBeGreaterThan(0);
      expect(replay.nonces.size).toBe(nonceCacheCapacity);
      expect(replay.recent.size).toBe(recentEventIdCapacity);
      // `oversize` is counted by the stream supervisor (the decoder skips those events unparsed).
      expect(Object.entries(verifier.rejected).every(([k, n]) => k === "oversize" || n > 0) || verifier.rejected.stale === 0).toBe(true);
      expect(verifier.rejected.bad_signature + verifier.rejected.malformed).toBeGreaterThan(1000);

      // Heap: the verifier's state is capped, so 70,000 more streams must not grow the heap by
      // more than noise. Without gc() the number includes garbage, so the bound is looser.
      gc?.();
      const growth = process.memoryUsage().heapUsed - heapBaseline;
      expect(growth, `heap grew by ${(growth / 2 ** 20).toFixed(1)} MiB (gc ${gc ? "on" : "off"})`).toBeLessThan((gc ? 16 : 64) * 2 ** 20);

      // The same bytes through the async supervisor: rejection logging with hostile ids/types and
      // the dispatch path must not throw or leave a rejection unhandled.
      let logged = 0;
      const logger = createLogger({
        name: "fuzz",
        level: "debug",
        destination: new Writable({
          write(_c, _e, cb) {
            logged++;
            cb();
          },
        }),
      });
      const ac = new AbortController();
      const clock: Clock = {
        now: () => T,
        sleep: (_ms, signal) => (signal?.aborted ? Promise.reject(abortError(signal)) : Promise.resolve()),
      };
      let left = 2000;
      const exit = await runEventStream({
        verifier,
        dispatch: (e) => {
          if (e.event_type === "x_unknown") throw new Error("handler failure");
        },
        clock,
        backoff: new Backoff(),
        signal: ac.signal,
        logger,
        onConnected: () => {},
        poll: async () => {},
        open: async (_last, sink) => {
          if (left-- <= 0) {
            ac.abort();
            return { status: 0, end: "aborted" };
          }
          sink.onOpen();
          const pending: SseFrame[] = [];
          const dec = createEventStreamDecoder({ maxEventChars: 64 * 1024, onFrame: (f) => pending.push(f) });
          const src = R.chance(0.2) ? validStream(1).bytes : R.chance(0.5) ? mutate(baseForMutation()) : tokenSoup();
          for (const c of chunks(src)) dec.push(c);
          dec.end();
          // Whole, and one by one: the batch path and the single-event path.
          if (R.chance(0.5)) await sink.onEvents(pending);
          else for (const f of pending) await sink.onEvents([f]);
          return { status: 200, end: "ended" };
        },
      });
      expect(exit).toEqual({ reason: "aborted" });
      expect(logged).toBeGreaterThan(0);
      expect(replay.nonces.size).toBeLessThanOrEqual(nonceCacheCapacity);
      await new Promise((r) => setImmediate(r));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});
