// Reads the server name from the first bytes of a TLS connection without consuming them, so
// ingress can pick a rule by SNI and still hand the untouched bytes to the target (passthrough)
// or to its own TLS server (terminate). Only what routing needs is parsed: the record header,
// the ClientHello header and the server_name extension (RFC 8446 4.1.2, RFC 6066 3).

export type SniPeek =
  /** More bytes are needed to decide. */
  | { kind: "more" }
  /** A ClientHello; `sni` is lower case, undefined when the client sent none. */
  | { kind: "hello"; sni: string | undefined }
  /** Not a TLS handshake (or a malformed one). */
  | { kind: "not_tls" };

/** The most bytes a ClientHello may take before ingress gives up on it. */
export const maxHelloBytes = 16 * 1024;

const more: SniPeek = { kind: "more" };
const notTls: SniPeek = { kind: "not_tls" };

export function peekSni(buf: Buffer): SniPeek {
  if (buf.length < 1) return more;
  if (buf[0] !== 0x16) return notTls; // handshake record
  if (buf.length < 5) return more;
  if (buf[1] !== 0x03) return notTls;
  const recordLen = buf.readUInt16BE(3);
  if (recordLen < 4 || recordLen > maxHelloBytes) return notTls;
  if (buf[5] !== undefined && buf[5] !== 0x01) return notTls; // ClientHello
  if (buf.length < 9) return more;
  const helloLen = buf.readUIntBE(6, 3);
  // A ClientHello larger than its first record spans records; ingress does not reassemble them.
  if (helloLen + 4 > recordLen) return helloLen + 4 > maxHelloBytes ? notTls : parseSpanning(buf, helloLen);
  if (buf.length < 5 + recordLen) return more;
  return parseHello(buf.subarray(9, 9 + helloLen));
}

/** Joins the handshake fragments of consecutive records, then parses the hello once it is whole. */
function parseSpanning(buf: Buffer, helloLen: number): SniPeek {
  const parts: Buffer[] = [];
  let have = 0;
  let at = 0;
  while (have < helloLen + 4) {
    if (buf.length < at + 5) return more;
    if (buf[at] !== 0x16) return notTls;
    const len = buf.readUInt16BE(at + 3);
    if (buf.length < at + 5 + len) return more;
    parts.push(buf.subarray(at + 5, at + 5 + len));
    have += len;
    at += 5 + len;
  }
  return parseHello(Buffer.concat(parts).subarray(4, 4 + helloLen));
}

function parseHello(h: Buffer): SniPeek {
  let p = 2 + 32; // client_version, random
  if (h.length < p + 1) return notTls;
  p += 1 + h[p]!; // session_id
  if (h.length < p + 2) return notTls;
  p += 2 + h.readUInt16BE(p); // cipher_suites
  if (h.length < p + 1) return notTls;
  p += 1 + h[p]!; // compression_methods
  if (h.length === p) return { kind: "hello", sni: undefined }; // no extensions
  if (h.length < p + 2) return notTls;
  const end = p + 2 + h.readUInt16BE(p);
  if (end > h.length) return notTls;
  p += 2;
  while (p + 4 <= end) {
    const type = h.readUInt16BE(p);
    const len = h.readUInt16BE(p + 2);
    p += 4;
    if (p + len > end) return notTls;
    if (type === 0) return serverName(h.subarray(p, p + len));
    p += len;
  }
  return { kind: "hello", sni: undefined };
}

function serverName(ext: Buffer): SniPeek {
  if (ext.length < 2) return notTls;
  const end = Math.min(ext.length, 2 + ext.readUInt16BE(0));
  let p = 2;
  while (p + 3 <= end) {
    const type = ext[p]!;
    const len = ext.readUInt16BE(p + 1);
    p += 3;
    if (p + len > end) return notTls;
    if (type === 0) return { kind: "hello", sni: ext.toString("latin1", p, p + len).toLowerCase() };
    p += len;
  }
  return { kind: "hello", sni: undefined };
}
