import { isIP } from "node:net";
import { describe, expect, it } from "vitest";
import { PlexdError } from "../../proto/lib/errors.js";
import { decodeBindingResponse, parseBindingResponse, STUN_MAGIC_COOKIE, type DecodeResult } from "../../agent/nat/stun.js";
import { rng, type Rng } from "../support/rng.js";

// Untrusted datagrams → the agent's STUN decoder. At least 100,000 inputs: random bytes,
// STUN-shaped attribute soup, and mutations of valid responses (bit flips, byte edits,
// truncation, length-field edits, splices). Oracles: parseBindingResponse never throws;
// decodeBindingResponse throws only PlexdError(invalid_argument); anything accepted really is
// a Binding success for our transaction with a well-formed address; unmutated valid responses
// decode to exactly what was encoded. The seed is random per run and printed with any failure;
// PLEXD_FUZZ_SEED replays a run.

const seed = Number(process.env.PLEXD_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const total = 100_000;



interface Encoded {
  buf: Buffer;
  txid: Buffer;
  ip: string;
  port: number;
}

function attr(type: number, value: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt16BE(type, 0);
  h.writeUInt16BE(value.length, 2);
  return Buffer.concat([h, value, Buffer.alloc((4 - (value.length % 4)) % 4)]);
}

function header(type: number, length: number, txid: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(type, 0);
  h.writeUInt16BE(length, 2);
  h.writeUInt32BE(STUN_MAGIC_COOKIE, 4);
  txid.copy(h, 8);
  return h;
}

/** A valid Binding success with noise attributes around a (XOR-)MAPPED-ADDRESS. */
function validResponse(r: Rng): Encoded {
  const txid = r.bytes(12);
  const ip = [r.int(256), r.int(256), r.int(256), r.int(256)].join(".");
  const port = r.int(65536);
  const useXor = r.next() < 0.7;
  const v = Buffer.alloc(8);
  v[1] = 1;
  const o = ip.split(".").map(Number);
  const addr = ((o[0]! << 24) | (o[1]! << 16) | (o[2]! << 8) | o[3]!) >>> 0;
  v.writeUInt16BE(useXor ? port ^ (STUN_MAGIC_COOKIE >>> 16) : port, 2);
  v.writeUInt32BE(useXor ? (addr ^ STUN_MAGIC_COOKIE) >>> 0 : addr, 4);
  const parts: Buffer[] = [];
  // Unknown attributes only: a random type must not land on one the decoder interprets
  // (FINGERPRINT 0x8028 would make a valid response invalid).
  const interpreted = new Set([0x0001, 0x0020, 0x8020, 0x8028, 0x0008]);
  const unknownType = (t: number): number => (interpreted.has(t) ? 0x802c : t);
  const noise = (): Buffer => attr(unknownType(r.pick([0x8022, 0x8023, 0x802b, 0x802c, 0x0007, 0x4000 + r.int(0x3fff), 0x8000 + r.int(0x7fff)])), r.bytes(r.int(24)));
  for (let i = r.int(3); i > 0; i--) parts.push(noise());
  parts.push(attr(useXor ? 0x0020 : 0x0001, v));
  for (let i = r.int(3); i > 0; i--) parts.push(noise());
  const body = Buffer.concat(parts);
  return { buf: Buffer.concat([header(0x0101, body.length, txid), body]), txid, ip, port };
}

function mutate(r: Rng, b: Buffer): Buffer {
  const out = Buffer.from(b);
  switch (r.int(7)) {
    case 0: // bit flips
      for (let i = 1 + r.int(4); i > 0 && out.length > 0; i--) {
        const p = r.int(out.length);
        out[p] = out[p]! ^ (1 << r.int(8));
      }
      return out;
    case 1: // byte edits
      for (let i = 1 + r.int(4); i > 0 && out.length > 0; i--) out[r.int(out.length)] = r.int(256);
      return out;
    case 2: // truncation
      return out.subarray(0, r.int(out.length + 1));
    case 3: // header length edit
      if (out.length >= 4) out.writeUInt16BE(r.pick([0, 4, out.length - 20, out.length - 16, out.length, 0xfffc, r.int(65536)]) & 0xffff, 2);
      return out;
    case 4: // attribute length edit somewhere past the header
      if (out.length >= 24) out.writeUInt16BE(r.int(65536), 22 + 4 * r.int(Math.floor((out.length - 24) / 4) + 1));
      return out;
    case 5: // append junk
      return Buffer.concat([out, r.bytes(r.int(40))]);
    default: // splice in random bytes
      if (out.length === 0) return r.bytes(r.int(64));
      return Buffer.concat([out.subarray(0, r.int(out.length)), r.bytes(r.int(16)), out.subarray(r.int(out.length))]);
  }
}

/** STUN-shaped garbage: a right-looking header and random attributes of random lengths. */
function soup(r: Rng): { buf: Buffer; txid: Buffer } {
  const txid = r.bytes(12);
  const parts: Buffer[] = [];
  for (let i = r.int(6); i > 0; i--) {
    const type = r.pick([0x0001, 0x0020, 0x8028, 0x0008, r.int(65536)]);
    const len = r.pick([0, 4, 8, 20, r.int(64)]);
    const h = Buffer.alloc(4);
    h.writeUInt16BE(type, 0);
    h.writeUInt16BE(r.next() < 0.8 ? len : r.int(65536), 2);
    parts.push(h, r.bytes(r.next() < 0.8 ? len + ((4 - (len % 4)) % 4) : r.int(64)));
  }
  const body = Buffer.concat(parts);
  return { buf: Buffer.concat([header(r.pick([0x0101, 0x0101, 0x0111, 0x0001, r.int(65536)]), r.next() < 0.8 ? body.length : r.int(65536), txid), body]), txid };
}

const reasons = new Set(["too_short", "not_stun", "not_binding_success", "txid_mismatch", "bad_length", "truncated_attribute", "malformed_address", "bad_fingerprint", "no_mapped_address"]);

function check(buf: Buffer, txid: Buffer): DecodeResult {
  let r: DecodeResult;
  try {
    r = parseBindingResponse(buf, txid);
  } catch (err) {
    throw new Error(`parseBindingResponse threw for ${buf.toString("hex")}: ${String(err)}`);
  }
  if (r.ok) {
    // Accepted: it must really be a Binding success for our transaction, with a sane address.
    if (buf.readUInt16BE(0) !== 0x0101 || buf.readUInt32BE(4) !== STUN_MAGIC_COOKIE || !buf.subarray(8, 20).equals(txid)) throw new Error(`accepted a non-matching message ${buf.toString("hex")}`);
    const m = r.response.mapped;
    if (isIP(m.ip) !== m.family || !(Number.isInteger(m.port) && m.port >= 0 && m.port <= 65535)) throw new Error(`bad address ${JSON.stringify(m)}`);
  } else if (!reasons.has(r.reason)) {
    throw new Error(`unknown reason ${r.reason}`);
  }
  try {
    decodeBindingResponse(buf, txid);
  } catch (err) {
    if (!(err instanceof PlexdError) || err.code !== "invalid_argument") throw new Error(`decodeBindingResponse threw something else: ${String(err)}`);
  }
  return r;
}

describe(`STUN decoder fuzz (seed ${seed})`, () => {
  it(`survives ${total} random, STUN-shaped and mutated datagrams`, () => {
    const r = rng(seed);
    const tally = { random: 0, soup: 0, mutated: 0, valid: 0, accepted: 0 };
    for (let i = 0; i < total; i++) {
      const kind = r.int(10);
      if (kind === 0) {
        const buf = r.bytes(r.int(600));
        // Sometimes with the right header so the attribute walk is reached.
        if (buf.length >= 20 && r.next() < 0.5) header(0x0101, buf.length - 20 - ((buf.length - 20) % 4), buf.subarray(8, 20)).copy(buf);
        if (check(buf, buf.length >= 20 ? buf.subarray(8, 20) : r.bytes(12)).ok) tally.accepted++;
        tally.random++;
      } else if (kind <= 3) {
        const s = soup(r);
        if (check(s.buf, s.txid).ok) tally.accepted++;
        tally.soup++;
      } else if (kind <= 5) {
        const v = validResponse(r);
        const res = check(v.buf, v.txid);
        if (!res.ok || res.response.mapped.ip !== v.ip || res.response.mapped.port !== v.port) throw new Error(`valid response misread: ${v.buf.toString("hex")} → ${JSON.stringify(res)}`);
        tally.valid++;
        tally.accepted++;
      } else {
        const v = validResponse(r);
        let buf = v.buf;
        for (let k = 1 + r.int(3); k > 0; k--) buf = mutate(r, buf);
        if (check(buf, v.txid).ok) tally.accepted++;
        tally.mutated++;
      }
    }
    expect(tally.random + tally.soup + tally.mutated + tally.valid).toBe(total);
    // The corpus reaches the accepting path often, not only the early rejections.
    expect(tally.accepted).toBeGreaterThan(tally.valid);
  });
});
