import { createSocket } from "node:dgram";
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { bindingResponse, parseStunListen, startStunResponder, type StunResponder } from "./stun.js";

const cookie = 0x2112a442;

function request(txid = randomBytes(12)): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt16BE(0x0001, 0);
  b.writeUInt32BE(cookie, 4);
  txid.copy(b, 8);
  return b;
}

/** Reads both address attributes back (independently of the responder's encoder). */
function addresses(res: Buffer): { xor: string; plain: string } {
  const out: Record<number, string> = {};
  for (let off = 20; off + 4 <= 20 + res.readUInt16BE(2); ) {
    const type = res.readUInt16BE(off);
    const len = res.readUInt16BE(off + 2);
    let port = res.readUInt16BE(off + 6);
    let addr = res.readUInt32BE(off + 8);
    if (type === 0x0020) {
      port ^= cookie >>> 16;
      addr = (addr ^ cookie) >>> 0;
    }
    out[type] = `${addr >>> 24}.${(addr >>> 16) & 255}.${(addr >>> 8) & 255}.${addr & 255}:${port}`;
    off += 4 + len;
  }
  return { xor: out[0x0020] ?? "", plain: out[0x0001] ?? "" };
}

describe("bindingResponse", () => {
  it("echoes the transaction id and carries both address forms", () => {
    const req = request();
    const res = bindingResponse(req, "203.0.113.9", 51820)!;
    expect(res.readUInt16BE(0)).toBe(0x0101);
    expect(res.readUInt16BE(2)).toBe(res.length - 20);
    expect(res.subarray(4, 20).equals(req.subarray(4, 20))).toBe(true);
    expect(addresses(res)).toEqual({ xor: "203.0.113.9:51820", plain: "203.0.113.9:51820" });
  });

  it("ignores anything that is not a Binding request", () => {
    expect(bindingResponse(Buffer.from("hello world, not stun"), "192.0.2.1", 1)).toBeUndefined();
    const resp = request();
    resp.writeUInt16BE(0x0101, 0);
    expect(bindingResponse(resp, "192.0.2.1", 1)).toBeUndefined();
    expect(bindingResponse(request().subarray(0, 19), "192.0.2.1", 1)).toBeUndefined();
  });
});

describe("parseStunListen", () => {
  it("takes IPV4:PORT only", () => {
    expect(parseStunListen("192.0.2.1:3478")).toEqual({ host: "192.0.2.1", port: 3478 });
    expect(parseStunListen("127.0.0.1:0")).toEqual({ host: "127.0.0.1", port: 0 });
    for (const bad of ["3478", "localhost:3478", "192.0.2.1:", "192.0.2.1:70000", "[::1]:3478", "192.0.2.1:-1"]) expect(() => parseStunListen(bad)).toThrow(/want IPV4:PORT/);
  });
});

describe("startStunResponder", () => {
  let r: StunResponder | undefined;
  afterEach(async () => {
    await r?.close();
    r = undefined;
  });

  it("answers a client on loopback with the client's own address", async () => {
    r = await startStunResponder({ host: "127.0.0.1", port: 0 });
    const port = Number(r.address.split(":")[1]);
    const sock = createSocket("udp4");
    await new Promise<void>((res) => sock.bind(0, "127.0.0.1", () => res()));
    const req = request();
    const reply = new Promise<Buffer>((res) => sock.once("message", (m) => res(m)));
    sock.send(Buffer.from("junk first"), port, "127.0.0.1");
    sock.send(req, port, "127.0.0.1");
    const res = await reply;
    expect(res.subarray(8, 20).equals(req.subarray(8, 20))).toBe(true);
    expect(addresses(res).xor).toBe(`127.0.0.1:${sock.address().port}`);
    expect(r.answered).toBe(1);
    sock.close();
  });
});
