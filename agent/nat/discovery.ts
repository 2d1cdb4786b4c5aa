import { randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import { lookup } from "node:dns/promises";
import { networkInterfaces } from "node:os";
import { PlexdError } from "../../proto/lib/errors.js";

// Public-endpoint discovery with STUN (RFC 5389/8489 Binding), built and parsed here in the
// agent (bridge spec §1.2: no protocol parsing in the root process).

const magicCookie = 0x2112a442;

export interface BindingRequest {
  bytes: Buffer;
  txid: Buffer;
}

export function bindingRequest(): BindingRequest {
  const txid = randomBytes(12);
  const bytes = Buffer.alloc(20);
  bytes.writeUInt16BE(0x0001, 0);
  bytes.writeUInt16BE(0, 2);
  bytes.writeUInt32BE(magicCookie, 4);
  txid.copy(bytes, 8);
  return { bytes, txid };
}

export interface MappedAddress {
  ip: string;
  port: number;
}

/** Parses a Binding success response; undefined for anything that is not one for `txid`. */
export function parseBindingResponse(buf: Buffer, txid: Buffer): MappedAddress | undefined {
  if (buf.length < 20 || buf.readUInt16BE(0) !== 0x0101 || buf.readUInt32BE(4) !== magicCookie) return undefined;
  if (!buf.subarray(8, 20).equals(txid)) return undefined;
  const end = Math.min(buf.length, 20 + buf.readUInt16BE(2));
  let xor: MappedAddress | undefined;
  let plain: MappedAddress | undefined;
  for (let off = 20; off + 4 <= end; ) {
    const type = buf.readUInt16BE(off);
    const len = buf.readUInt16BE(off + 2);
    const value = off + 4;
    if (value + len > end) break;
    // IPv4 only (bridge spec §1.2): family 0x01, 8 value bytes.
    if ((type === 0x0020 || type === 0x0001) && len >= 8 && buf[value + 1] === 0x01) {
      let port = buf.readUInt16BE(value + 2);
      let addr = buf.readUInt32BE(value + 4);
      if (type === 0x0020) {
        port ^= magicCookie >>> 16;
        addr = (addr ^ magicCookie) >>> 0;
      }
      const ip = [addr >>> 24, (addr >>> 16) & 255, (addr >>> 8) & 255, addr & 255].join(".");
      if (type === 0x0020) xor ??= { ip, port };
      else plain ??= { ip, port };
    }
    off = value + len + ((4 - (len % 4)) % 4);
  }
  return xor ?? plain;
}

export function localIPv4Addresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === "IPv4") out.add(a.address);
  return out;
}

export type NatType = "none" | "full_cone" | "symmetric" | "unknown";

export interface Discovery {
  publicEndpoint: string;
  natType: NatType;
  fromMeshPort: boolean;
}

export interface ProbeResult {
  mapped: MappedAddress;
  fromMeshPort: boolean;
}

/** Sends one Binding request from an ephemeral port of the agent's own (spec fallback). */
export async function probeFromEphemeralPort(ip: string, port: number, timeoutMs: number, signal?: AbortSignal): Promise<ProbeResult> {
  const req = bindingRequest();
  const sock = createSocket("udp4");
  try {
    return await new Promise<ProbeResult>((resolve, reject) => {
      const timer = setTimeout(() => reject(new PlexdError("deadline_exceeded", `STUN ${ip}:${port}: no answer in ${timeoutMs} ms`)), timeoutMs);
      signal?.addEventListener("abort", () => reject(new PlexdError("cancelled", "aborted")), { once: true });
      sock.on("error", (err) => reject(PlexdError.from(err)));
      sock.on("message", (msg) => {
        const mapped = parseBindingResponse(msg, req.txid);
        if (mapped) {
          clearTimeout(timer);
          resolve({ mapped, fromMeshPort: false });
        }
      });
      sock.send(req.bytes, port, ip, (err) => err && reject(PlexdError.from(err)));
    });
  } finally {
    sock.close();
  }
}

export async function resolveServer(hostPort: string): Promise<{ ip: string; port: number }> {
  const i = hostPort.lastIndexOf(":");
  const host = hostPort.slice(0, i);
  const port = Number(hostPort.slice(i + 1));
  const { address } = await lookup(host, { family: 4 });
  return { ip: address, port };
}

/**
 * Classification (bridge spec §1.2 step 4). A mapping onto a local address means no NAT on
 * the path, so the mesh port is reachable as `<local ip>:<listen_port>` whichever port the
 * probe left from; otherwise two servers tell a cone from a symmetric NAT.
 */
export function classify(first: ProbeResult, second: ProbeResult | undefined, listenPort: number, local: Set<string>): Discovery | undefined {
  if (local.has(first.mapped.ip)) return { publicEndpoint: `${first.mapped.ip}:${listenPort}`, natType: "none", fromMeshPort: first.fromMeshPort };
  // Behind NAT, only a probe from the mesh port itself shows the mapping peers will use.
  if (!first.fromMeshPort) return undefined;
  const endpoint = `${first.mapped.ip}:${first.mapped.port}`;
  if (second === undefined) return { publicEndpoint: endpoint, natType: "unknown", fromMeshPort: true };
  const same = second.mapped.ip === first.mapped.ip && second.mapped.port === first.mapped.port;
  return { publicEndpoint: endpoint, natType: same ? "full_cone" : "symmetric", fromMeshPort: true };
}
