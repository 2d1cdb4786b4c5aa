import { describe, expect, it } from "vitest";
import { PlexdError } from "../../proto/lib/errors.js";
import { buildBindingRequest, decodeBindingResponse, isBindingRequest, parseBindingResponse, STUN_MAGIC_COOKIE } from "./stun.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

// RFC 5769 §2.2 "Sample IPv4 Response" (SOFTWARE, XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT).
const rfcTxid = hex("b7e7a701 bc34d686 fa87dfae");
const rfcIPv4Response = hex(`
  0101003c 2112a442 b7e7a701 bc34d686 fa87dfae
  8022000b 74657374 20766563 746f7220
  00200008 0001a147 e112a643
  00080014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7
  80280004 c07d4c96`);
// RFC 5769 §2.3 "Sample IPv6 Response".
const rfcIPv6Response = hex(`
  01010048 2112a442 b7e7a701 bc34d686 fa87dfae
  8022000b 74657374 20766563 746f7220
  00200014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9
  00080014 a382954e 4be67bf1 1784c97c 8292c275 bfe3ed41
  80280004 c8fb0b4c`);
// RFC 5769 §2.1 "Sample Request" (with USERNAME, PRIORITY, ... and FINGERPRINT).
const rfcRequest = hex(`
  00010058 2112a442 b7e7a701 bc34d686 fa87dfae
  80220010 5354554e 20746573 7420636c 69656e74
  00240004 6e0001ff
  80290008 932ff9b1 51263b36
  00060009 6576746a 3a683676 59202020
  00080014 9aeaa70c bfd8cb56 781ef2b5 b2d3f249 c1b571a2
  80280004 e57a3bcf`);

/** A success response carrying `attrs` (already padded) for `txid`. */
function response(txid: Buffer, attrs: Buffer, type = 0x0101): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(type, 0);
  h.writeUInt16BE(attrs.length, 2);
  h.writeUInt32BE(STUN_MAGIC_COOKIE, 4);
  txid.copy(h, 8);
  return Buffer.concat([h, attrs]);
}

function attr(type: number, value: Buffer): Buffer {
  const pad = (4 - (value.length % 4)) % 4;
  const h = Buffer.alloc(4);
  h.writeUInt16BE(type, 0);
  h.writeUInt16BE(value.length, 2);
  return Buffer.concat([h, value, Buffer.alloc(pad)]);
}

function ipv4Value(ip: string, port: number, xor: boolean): Buffer {
  const v = Buffer.alloc(8);
  v[1] = 0x01;
  const octets = ip.split(".").map(Number);
  let addr = ((octets[0]! << 24) | (octets[1]! << 16) | (octets[2]! << 8) | octets[3]!) >>> 0;
  let p = port;
  if (xor) {
    p ^= STUN_MAGIC_COOKIE >>> 16;
    addr = (addr ^ STUN_MAGIC_COOKIE) >>> 0;
  }
  v.writeUInt16BE(p, 2);
  v.writeUInt32BE(addr, 4);
  return v;
}

describe("buildBindingRequest", () => {
  it("is a 20-byte header-only Binding request with the cookie and a fresh 12-byte txid", () => {
    const a = buildBindingRequest();
    const b = buildBindingRequest();
    expect(a.bytes.length).toBe(20);
    expect(a.bytes.readUInt16BE(0)).toBe(0x0001);
    expect(a.bytes.readUInt16BE(2)).toBe(0);
    expect(a.bytes.readUInt32BE(4)).toBe(0x2112a442);
    expect(a.txid.equals(a.bytes.subarray(8, 20))).toBe(true);
    expect(a.txid.equals(b.txid)).toBe(false);
    expect(isBindingRequest(a.bytes)).toBe(true);
  });

  it("uses a given txid and refuses one of the wrong size", () => {
    expect(buildBindingRequest(rfcTxid).bytes.subarray(8).equals(rfcTxid)).toBe(true);
    expect(() => buildBindingRequest(Buffer.alloc(11))).toThrow(PlexdError);
  });
});

describe("parseBindingResponse: RFC 5769 test vectors", () => {
  it("IPv4 response: 192.0.2.1:32853 from XOR-MAPPED-ADDRESS, FINGERPRINT checked, MESSAGE-INTEGRITY noted", () => {
    const r = parseBindingResponse(rfcIPv4Response, rfcTxid);
    expect(r).toEqual({
      ok: true,
      response: { mapped: { family: 4, ip: "192.0.2.1", port: 32853 }, source: "xor-mapped-address", unknownComprehensionRequired: [0x0008] },
    });
  });

  it("IPv6 response: 2001:db8:1234:5678:11:2233:4455:6677 port 32853 (XOR with cookie + txid)", () => {
    const r = decodeBindingResponse(rfcIPv6Response, rfcTxid);
    expect(r.mapped).toEqual({ family: 6, ip: "2001:db8:1234:5678:11:2233:4455:6677", port: 32853 });
  });

  it("a flipped bit under the FINGERPRINT is rejected", () => {
    const bad = Buffer.from(rfcIPv4Response);
    bad[25] = bad[25]! ^ 1; // inside SOFTWARE
    expect(parseBindingResponse(bad, rfcTxid)).toMatchObject({ ok: false, reason: "bad_fingerprint" });
  });

  it("the sample request is recognised as a Binding request, and is no response", () => {
    expect(isBindingRequest(rfcRequest)).toBe(true);
    expect(parseBindingResponse(rfcRequest, rfcTxid)).toMatchObject({ ok: false, reason: "not_binding_success" });
  });
});

describe("parseBindingResponse", () => {
  const txid = Buffer.from("0123456789ab");

  it("prefers XOR-MAPPED-ADDRESS over MAPPED-ADDRESS in either order", () => {
    const plain = attr(0x0001, ipv4Value("198.51.100.7", 1000, false));
    const xor = attr(0x0020, ipv4Value("203.0.113.9", 51820, true));
    for (const attrs of [Buffer.concat([plain, xor]), Buffer.concat([xor, plain])]) {
      const r = decodeBindingResponse(response(txid, attrs), txid);
      expect(r.mapped).toEqual({ family: 4, ip: "203.0.113.9", port: 51820 });
      expect(r.source).toBe("xor-mapped-address");
    }
  });

  it("falls back to MAPPED-ADDRESS (RFC 3489 servers)", () => {
    const r = decodeBindingResponse(response(txid, attr(0x0001, ipv4Value("198.51.100.7", 4242, false))), txid);
    expect(r).toEqual({ mapped: { family: 4, ip: "198.51.100.7", port: 4242 }, source: "mapped-address", unknownComprehensionRequired: [] });
  });

  it("skips unknown attributes with odd lengths (padding) and notes comprehension-required ones", () => {
    const attrs = Buffer.concat([attr(0x8022, Buffer.from("x")), attr(0x7777, Buffer.from("abcde")), attr(0x0020, ipv4Value("192.0.2.200", 7, true)), attr(0xc001, Buffer.alloc(0))]);
    const r = decodeBindingResponse(response(txid, attrs), txid);
    expect(r.mapped).toEqual({ family: 4, ip: "192.0.2.200", port: 7 });
    expect(r.unknownComprehensionRequired).toEqual([0x7777]);
  });

  it("keeps the first of repeated address attributes", () => {
    const attrs = Buffer.concat([attr(0x0020, ipv4Value("192.0.2.1", 1, true)), attr(0x0020, ipv4Value("192.0.2.2", 2, true))]);
    expect(decodeBindingResponse(response(txid, attrs), txid).mapped.ip).toBe("192.0.2.1");
  });

  it("ignores bytes past the declared length", () => {
    const ok = response(txid, attr(0x0020, ipv4Value("192.0.2.1", 9, true)));
    expect(decodeBindingResponse(Buffer.concat([ok, Buffer.from([1, 2, 3])]), txid).mapped.port).toBe(9);
  });

  const good = response(txid, attr(0x0020, ipv4Value("192.0.2.1", 9, true)));
  const cases: [string, Buffer, Buffer, string][] = [
    ["empty", Buffer.alloc(0), txid, "too_short"],
    ["19 bytes", good.subarray(0, 19), txid, "too_short"],
    ["no cookie", Buffer.concat([good.subarray(0, 4), Buffer.alloc(4), good.subarray(8)]), txid, "not_stun"],
    ["top bits set", Buffer.concat([Buffer.from([0xc1, 0x01]), good.subarray(2)]), txid, "not_stun"],
    ["error response", response(txid, Buffer.alloc(0), 0x0111), txid, "not_binding_success"],
    ["request", response(txid, Buffer.alloc(0), 0x0001), txid, "not_binding_success"],
    ["other txid", good, Buffer.from("0123456789ac"), "txid_mismatch"],
    ["length past the datagram", good.subarray(0, good.length - 4), txid, "bad_length"],
    ["length not a multiple of 4", Buffer.concat([good.subarray(0, 2), Buffer.from([0, 13]), good.subarray(4), Buffer.alloc(1)]), txid, "bad_length"],
    ["attribute past the end", response(txid, Buffer.from([0x00, 0x20, 0x00, 0x10, 0, 1, 0, 0])), txid, "truncated_attribute"],
    ["padding past the end", response(txid, Buffer.from([0x80, 0x22, 0x00, 0x05, 1, 2, 3, 4])), txid, "truncated_attribute"],
    ["short address", response(txid, attr(0x0020, Buffer.from([0, 1, 0, 0]))), txid, "malformed_address"],
    ["IPv4 family, IPv6 length", response(txid, attr(0x0020, Buffer.concat([Buffer.from([0, 1, 0, 0]), Buffer.alloc(16)]))), txid, "malformed_address"],
    ["unknown family", response(txid, attr(0x0001, Buffer.from([0, 3, 0, 1, 1, 2, 3, 4]))), txid, "malformed_address"],
    ["no address at all", response(txid, attr(0x8022, Buffer.from("soft"))), txid, "no_mapped_address"],
    ["fingerprint of the wrong size", response(txid, attr(0x8028, Buffer.alloc(8))), txid, "bad_fingerprint"],
  ];
  it.each(cases)("rejects %s", (_name, buf, id, reason) => {
    const r = parseBindingResponse(buf, id);
    expect(r).toMatchObject({ ok: false, reason });
    try {
      decodeBindingResponse(buf, id);
      expect.unreachable("decode must throw");
    } catch (err) {
      expect(err).toBeInstanceOf(PlexdError);
      expect((err as PlexdError).code).toBe("invalid_argument");
      expect((err as PlexdError).message).toContain(reason);
    }
  });

  it("decodes from a subarray at a non-zero byte offset", () => {
    const backing = Buffer.concat([Buffer.alloc(7), good]);
    expect(decodeBindingResponse(backing.subarray(7), txid).mapped.port).toBe(9);
  });
});
