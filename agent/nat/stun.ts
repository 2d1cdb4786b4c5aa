import { randomBytes } from "node:crypto";
import { crc32 } from "node:zlib";
import { PlexdError } from "../../proto/lib/errors.js";
import { ipFromBytes } from "../../proto/lib/net.js";

// STUN Binding (RFC 5389 / RFC 8489), only what endpoint discovery needs: build a request,
// decode a success response. Everything here is pure and runs in the agent (docs/architecture.md#the-control-plane-channel:
// no protocol parsing in the root process). Reply bytes come from the network, so the decoder
// treats them as hostile: every read is bounds-checked and every failure is a PlexdError
// with code `invalid_argument` and a machine-readable `reason`.

export const STUN_MAGIC_COOKIE = 0x2112a442;
export const STUN_HEADER_BYTES = 20;
export const STUN_BINDING_REQUEST = 0x0001;
export const STUN_BINDING_SUCCESS = 0x0101;
export const ATTR_MAPPED_ADDRESS = 0x0001;
export const ATTR_XOR_MAPPED_ADDRESS = 0x0020;
export const ATTR_FINGERPRINT = 0x8028;
/** RFC 5389 §15.5: the CRC-32 is XORed with this ("STUN"). */
const FINGERPRINT_XOR = 0x5354554e;

export interface BindingRequest {
  /** The 20-byte datagram to send. */
  bytes: Buffer;
  /** Its 12-byte transaction id; a reply must carry the same one. */
  txid: Buffer;
}

/** A Binding request: type 0x0001, length 0, magic cookie, 12 random bytes of transaction id. */
export function buildBindingRequest(txid: Uint8Array = randomBytes(12)): BindingRequest {
  if (txid.length !== 12) throw new PlexdError("invalid_argument", "STUN transaction id must be 12 bytes");
  const bytes = Buffer.alloc(STUN_HEADER_BYTES);
  bytes.writeUInt16BE(STUN_BINDING_REQUEST, 0);
  bytes.writeUInt16BE(0, 2);
  bytes.writeUInt32BE(STUN_MAGIC_COOKIE, 4);
  bytes.set(txid, 8);
  return { bytes, txid: Buffer.from(bytes.subarray(8, 20)) };
}

export interface MappedAddress {
  family: 4 | 6;
  ip: string;
  port: number;
}

export interface BindingResponse {
  /** XOR-MAPPED-ADDRESS when present, else MAPPED-ADDRESS. */
  mapped: MappedAddress;
  source: "xor-mapped-address" | "mapped-address";
  /**
   * Comprehension-required attribute types (< 0x8000) this decoder does not know. RFC 5389
   * §7.3.3 makes them fatal for requests; for a Binding *response* the mapped address is still
   * usable, so they are reported, not rejected (a decision of this project).
   */
  unknownComprehensionRequired: number[];
}

export type StunRejectReason =
  | "too_short" // fewer than 20 bytes
  | "not_stun" // top two bits of the type are not zero, or no magic cookie
  | "not_binding_success" // another message type (error response, request, indication)
  | "txid_mismatch" // a reply to some other transaction
  | "bad_length" // header length not a multiple of 4, or larger than the datagram
  | "truncated_attribute" // an attribute runs past the end of the message
  | "malformed_address" // a (XOR-)MAPPED-ADDRESS with a bad family or length
  | "bad_fingerprint" // FINGERPRINT present but wrong
  | "no_mapped_address"; // a well-formed success without any address

export type DecodeResult = { ok: true; response: BindingResponse } | { ok: false; reason: StunRejectReason; detail: string };

function reject(reason: StunRejectReason, detail: string): DecodeResult {
  return { ok: false, reason, detail };
}

/** Decodes one (XOR-)MAPPED-ADDRESS value; `xorKey` is cookie+txid for the XOR form. */
function decodeAddress(value: Uint8Array, xorKey: Uint8Array | undefined): MappedAddress | string {
  if (value.length < 4) return `address value of ${value.length} bytes`;
  const family = value[1];
  const want = family === 0x01 ? 4 : family === 0x02 ? 16 : 0;
  if (want === 0) return `unknown address family 0x${(family ?? 0).toString(16)}`;
  if (value.length !== 4 + want) return `address value of ${value.length} bytes for family ${family === 0x01 ? "IPv4" : "IPv6"}`;
  let port = ((value[2] ?? 0) << 8) | (value[3] ?? 0);
  const addr = Uint8Array.from(value.subarray(4, 4 + want));
  if (xorKey) {
    port ^= STUN_MAGIC_COOKIE >>> 16;
    for (let i = 0; i < want; i++) addr[i] = (addr[i] ?? 0) ^ (xorKey[i] ?? 0);
  }
  // ipFromBytes prints RFC 5952 text, the same as Node prints for a socket's address.
  return { family: want === 4 ? 4 : 6, ip: ipFromBytes(addr) ?? "", port };
}

/**
 * Decodes a Binding success response to the request with `txid`. Never throws: malformed
 * input yields `{ ok: false, reason }`.
 */
export function parseBindingResponse(buf: Uint8Array, txid: Uint8Array): DecodeResult {
  if (buf.length < STUN_HEADER_BYTES) return reject("too_short", `${buf.length} bytes`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const type = view.getUint16(0);
  const length = view.getUint16(2);
  if ((type & 0xc000) !== 0 || view.getUint32(4) !== STUN_MAGIC_COOKIE) return reject("not_stun", "no STUN header");
  if (type !== STUN_BINDING_SUCCESS) return reject("not_binding_success", `message type 0x${type.toString(16).padStart(4, "0")}`);
  if (txid.length !== 12) return reject("txid_mismatch", "expected transaction id is not 12 bytes");
  for (let i = 0; i < 12; i++) if (buf[8 + i] !== txid[i]) return reject("txid_mismatch", "transaction id differs");
  if (length % 4 !== 0) return reject("bad_length", `length ${length} is not a multiple of 4`);
  const end = STUN_HEADER_BYTES + length;
  // Bytes past the declared length are ignored; a length past the datagram is truncation.
  if (end > buf.length) return reject("bad_length", `length ${length} exceeds the ${buf.length - STUN_HEADER_BYTES} bytes received`);

  const xorKey = buf.subarray(4, 20); // magic cookie then transaction id (RFC 8489 §14.2)
  let xor: MappedAddress | undefined;
  let plain: MappedAddress | undefined;
  const unknown: number[] = [];
  for (let off = STUN_HEADER_BYTES; off < end; ) {
    if (off + 4 > end) return reject("truncated_attribute", `attribute header at offset ${off}`);
    const atype = view.getUint16(off);
    const alen = view.getUint16(off + 2);
    const vstart = off + 4;
    const padded = vstart + alen + ((4 - (alen % 4)) % 4);
    if (padded > end) return reject("truncated_attribute", `attribute 0x${atype.toString(16)} of ${alen} bytes at offset ${off}`);
    const value = buf.subarray(vstart, vstart + alen);
    if (atype === ATTR_XOR_MAPPED_ADDRESS || atype === ATTR_MAPPED_ADDRESS) {
      const isXor = atype === ATTR_XOR_MAPPED_ADDRESS;
      const a = decodeAddress(value, isXor ? xorKey : undefined);
      if (typeof a === "string") return reject("malformed_address", `${isXor ? "XOR-MAPPED-ADDRESS" : "MAPPED-ADDRESS"}: ${a}`);
      // RFC 8489 §5: only the first occurrence of an attribute counts.
      if (isXor) xor ??= a;
      else plain ??= a;
    } else if (atype === ATTR_FINGERPRINT) {
      if (alen !== 4) return reject("bad_fingerprint", `FINGERPRINT of ${alen} bytes`);
      // CRC-32 over everything before the attribute, with the header length as sent.
      const want = (crc32(buf.subarray(0, off)) ^ FINGERPRINT_XOR) >>> 0;
      if (view.getUint32(vstart) !== want) return reject("bad_fingerprint", "FINGERPRINT does not match");
    } else if (atype < 0x8000) {
      unknown.push(atype);
    }
    off = padded;
  }
  const mapped = xor ?? plain;
  if (!mapped) return reject("no_mapped_address", "neither XOR-MAPPED-ADDRESS nor MAPPED-ADDRESS present");
  return { ok: true, response: { mapped, source: xor ? "xor-mapped-address" : "mapped-address", unknownComprehensionRequired: unknown } };
}

/** As parseBindingResponse, but throws PlexdError(`invalid_argument`) on any rejection. */
export function decodeBindingResponse(buf: Uint8Array, txid: Uint8Array): BindingResponse {
  const r = parseBindingResponse(buf, txid);
  if (!r.ok) throw new PlexdError("invalid_argument", `STUN reply rejected (${r.reason}): ${r.detail}`);
  return r.response;
}

/** True when `buf` is a plain STUN Binding request (header only checks; used by responders). */
export function isBindingRequest(buf: Uint8Array): boolean {
  if (buf.length < STUN_HEADER_BYTES) return false;
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return view.getUint16(0) === STUN_BINDING_REQUEST && view.getUint32(4) === STUN_MAGIC_COOKIE && view.getUint16(2) % 4 === 0 && STUN_HEADER_BYTES + view.getUint16(2) <= buf.length;
}
