// StunProbe: send one STUN Binding request from the mesh listen port and return the reply bytes; the agent builds and parses them. The
// WireGuard device owns that port, so privhelper binds its own UDP socket and, for this one probe, SNATs its datagrams to <source ip>:<mesh
// port> with a dedicated table `ip plexd_stun`; conntrack turns the reply back to the socket. The table goes as soon as the probe ends.
// Conntrack keeps the binding for 30-120 s, and a later probe to the same server from another local port would clash with it and be
// dropped, so the local port is derived from the server and mesh port and the next probe reuses it. Where that path cannot be used (no
// device yet, no nft, no answer) the probe goes from an ephemeral port with `from_mesh_port` false, and the agent classifies accordingly.
import { createHash } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { StunProbeRequest, StunProbeResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import type { CallContext } from "../adapter.js";
import type { PrivConfig } from "../config.js";
import type { Lock } from "../handlers.js";
import type { Logger } from "../log.js";
import type { Host } from "../os/host.js";
import type { Runner } from "../os/run.js";
import { parseIp } from "../../proto/lib/net.js";
import { setStunSnat, udpExchange as realUdpExchange, type UdpExchange } from "../os/stun.js";
import type { WgBackend } from "../os/wg.js";
import { Issues } from "../validate.js";

// RFC 8489 §6.1: without path MTU knowledge, a STUN message over IPv4 stays within 548 bytes.
export const [maxStunRequestBytes, maxStunTimeoutMs, defaultStunTimeoutMs] = [548, 10_000, 5_000];

/** `lock`: probes are serialised (each owns table ip plexd_stun while it runs), apart from the mesh lock. */
export interface StunProbeDeps { runner: Runner; host: Pick<Host, "which">; config: PrivConfig; log: Logger; wgFor(iface: string): Promise<Pick<WgBackend, "show">>; udp?: UdpExchange; lock: Lock }

export interface ValidStunProbe { ip: string; port: number; request: Buffer; timeoutMs: number }

/** A unicast IPv4 server, a port, and a STUN Binding request: privhelper is no generic packet sender. */
export function validateStunProbe(req: Pick<StunProbeRequest, "ip" | "port" | "request" | "timeoutMs">): ValidStunProbe {
  const issues = new Issues();
  const ip = parseIp(req.ip);
  const first = ip === undefined ? 0 : Number(ip.value >> 24n);
  if (ip?.family !== 4) issues.add("ip", `${JSON.stringify(req.ip.slice(0, 60))} is not an IPv4 address`);
  else if (first === 0 || first >= 224) issues.add("ip", `${req.ip} is not a unicast address`);
  if (!Number.isInteger(req.port) || req.port < 1 || req.port > 65535) issues.add("port", `${req.port} is not 1-65535`);
  const r = req.request;
  if (r.length < 20 || r.length > maxStunRequestBytes) issues.add("request", `${r.length} bytes; a STUN request is 20-${maxStunRequestBytes} bytes`);
  else {
    const v = new DataView(r.buffer, r.byteOffset, r.byteLength);
    if (v.getUint16(0) !== 0x0001) issues.add("request", `message type 0x${v.getUint16(0).toString(16).padStart(4, "0")} is not a Binding request (0x0001)`);
    if (v.getUint32(4) !== 0x2112a442) issues.add("request", "no STUN magic cookie");
    if (v.getUint16(2) !== r.length - 20) issues.add("request", `length field ${v.getUint16(2)} does not match the ${r.length - 20} attribute bytes`);
  }
  const timeoutMs = req.timeoutMs === 0 ? defaultStunTimeoutMs : req.timeoutMs;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > maxStunTimeoutMs) issues.add("timeout_ms", `${req.timeoutMs} is not 1-${maxStunTimeoutMs}`);
  issues.throwIfAny();
  return { ip: req.ip, port: req.port, request: Buffer.from(r), timeoutMs };
}

// Local ports for the mesh-port path, stable per (server, mesh port) so a repeated probe finds
// its conntrack binding; above Linux's ephemeral range (32768-60999), away from plexd's 5182x.
export function probePorts(ip: string, port: number, meshPort: number, count = 3): number[] {
  const out: number[] = [];
  for (let k = 0; out.length < count && k < count * 4; k++) {
    const h = createHash("sha256").update(`plexd-stun/${ip}:${port}/${meshPort}/${k}`).digest();
    const p = 61000 + (h.readUInt16BE(0) % 4536);
    if (p !== meshPort && !out.includes(p)) out.push(p);
  }
  return out;
}

type Response = MessageInitShape<typeof StunProbeResponseSchema>;

export function makeStunProbe(deps: StunProbeDeps) {
  const udp = deps.udp ?? realUdpExchange;
  const iface = deps.config.meshInterface;

  async function viaMeshPort(p: ValidStunProbe, mesh: number, signal: AbortSignal): Promise<Response> {
    for (const bindPort of [...probePorts(p.ip, p.port, mesh), 0]) {
      let applied = false;
      try {
        const snat = async (local: { address: string; port: number }) => {
          applied = true;
          await setStunSnat(deps.runner, { localIp: local.address, localPort: local.port, server: p.ip, serverPort: p.port, meshPort: mesh });
        };
        const r = await udp({ ...p, bindPort, signal, beforeSend: snat });
        return { reply: r.reply, sourcePort: mesh, fromMeshPort: true };
      } catch (err) {
        // Only a taken local port moves on to the next candidate; anything else ends this path.
        if (bindPort === 0 || PlexdError.from(err).code !== "already_exists") throw err;
      } finally {
        if (applied) await setStunSnat(deps.runner, undefined).catch((err: unknown) => deps.log.warn({ err: PlexdError.from(err).message }, "could not remove table ip plexd_stun"));
      }
    }
    throw new PlexdError("internal", "unreachable");
  }

  return (req: StunProbeRequest, ctx: CallContext): Promise<Response> => {
    const p = validateStunProbe(req);
    return deps.lock(async () => {
      const dev = await (await deps.wgFor(iface)).show(iface, ctx.signal).catch(() => undefined);
      const mesh = dev !== undefined && dev.listenPort > 0 ? dev.listenPort : undefined;
      let why = mesh === undefined ? `no WireGuard device ${iface} to share a port with` : (await deps.host.which("nft")) === undefined ? "nft is not installed" : "";
      if (mesh !== undefined && why === "") {
        try {
          return await viaMeshPort(p, mesh, ctx.signal);
        } catch (err) {
          if (ctx.signal.aborted) throw err;
          why = PlexdError.from(err).message;
        }
      }
      deps.log.debug({ server: `${p.ip}:${p.port}`, reason: why }, "StunProbe from an ephemeral port (mesh port unavailable)");
      const r = await udp({ ...p, signal: ctx.signal });
      return { reply: r.reply, sourcePort: r.localPort, fromMeshPort: false };
    });
  };
}
