// A minimal STUN Binding responder (RFC 8489) for tests and the demo: mockcp stands in for the
// public STUN servers, which tests must never contact. Each datagram that is a Binding request
// gets a success response with XOR-MAPPED-ADDRESS and MAPPED-ADDRESS (for RFC 3489-era
// clients) of the address it came from; anything else is dropped. IPv4 only, like the agent.
// Self-contained on purpose: mockcp does not import agent code (only proto/lib's address parsing).
import { createSocket, type Socket } from "node:dgram";
import { PlexdError } from "../../proto/lib/errors.js";
import { parseHostPort, parseIPv4Int } from "../../proto/lib/net.js";

const magicCookie = 0x2112a442;

export interface StunListenSpec {
  host: string;
  port: number;
}

/** Parses `HOST:PORT` (IPv4 host, port 0-65535; 0 picks a free port). */
export function parseStunListen(text: string): StunListenSpec {
  const hp = parseHostPort(text, { anyPort: true });
  if (hp?.family !== 4) throw new PlexdError("invalid_argument", `--stun-listen ${text}: want IPV4:PORT`);
  return { host: hp.host, port: hp.port };
}

/** The Binding success response to `request` as seen from ip:port, or undefined if it is not a Binding request. */
export function bindingResponse(request: Buffer, ip: string, port: number): Buffer | undefined {
  if (request.length < 20 || request.readUInt16BE(0) !== 0x0001 || request.readUInt32BE(4) !== magicCookie) return undefined;
  const addr = parseIPv4Int(ip);
  if (addr === undefined) return undefined;
  const out = Buffer.alloc(20 + 12 + 12);
  out.writeUInt16BE(0x0101, 0);
  out.writeUInt16BE(24, 2);
  request.copy(out, 4, 4, 20); // cookie + transaction id
  // XOR-MAPPED-ADDRESS
  out.writeUInt16BE(0x0020, 20);
  out.writeUInt16BE(8, 22);
  out.writeUInt8(0x01, 25);
  out.writeUInt16BE(port ^ (magicCookie >>> 16), 26);
  out.writeUInt32BE((addr ^ magicCookie) >>> 0, 28);
  // MAPPED-ADDRESS
  out.writeUInt16BE(0x0001, 32);
  out.writeUInt16BE(8, 34);
  out.writeUInt8(0x01, 37);
  out.writeUInt16BE(port, 38);
  out.writeUInt32BE(addr, 40);
  return out;
}

export interface StunResponder {
  /** Bound address, e.g. `192.0.2.1:3478`. */
  readonly address: string;
  /** Binding requests answered so far. */
  readonly answered: number;
  close(): Promise<void>;
}

export async function startStunResponder(spec: StunListenSpec, onError?: (err: Error) => void): Promise<StunResponder> {
  const sock: Socket = createSocket("udp4");
  let answered = 0;
  await new Promise<void>((resolve, reject) => {
    sock.once("error", reject);
    sock.bind(spec.port, spec.host, () => {
      sock.off("error", reject);
      resolve();
    });
  });
  sock.on("error", (err) => onError?.(err));
  sock.on("message", (msg, rinfo) => {
    const res = bindingResponse(msg, rinfo.address, rinfo.port);
    if (!res) return;
    answered++;
    sock.send(res, rinfo.port, rinfo.address);
  });
  const a = sock.address();
  return {
    address: `${a.address}:${a.port}`,
    get answered() {
      return answered;
    },
    close: () => new Promise<void>((resolve) => sock.close(() => resolve())),
  };
}
