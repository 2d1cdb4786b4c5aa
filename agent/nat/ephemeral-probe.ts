import { createSocket } from "node:dgram";
import { PlexdError } from "../../proto/lib/errors.js";

// Last resort when privhelper has no StunProbe (an older privhelper answers UNIMPLEMENTED):
// the agent sends the datagram from an ephemeral port of its own. The answer is then only as
// good as privhelper's own fallback (docs/architecture.md#the-control-plane-channel): `fromMeshPort` is false.

export interface RawProbe {
  reply: Uint8Array;
  sourcePort: number;
  fromMeshPort: boolean;
}

/** Sends `request` to ip:port from an ephemeral UDP port and resolves with the first datagram from that address. */
export function probeFromEphemeralPort(ip: string, port: number, request: Uint8Array, timeoutMs: number, signal?: AbortSignal): Promise<RawProbe> {
  return new Promise<RawProbe>((resolve, reject) => {
    const sock = createSocket("udp4");
    let done = false;
    const finish = (err: PlexdError | undefined, value?: RawProbe): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      sock.close();
      if (err) reject(err);
      else resolve(value!);
    };
    const onAbort = (): void => finish(new PlexdError("cancelled", "STUN probe aborted"));
    const timer = setTimeout(() => finish(new PlexdError("deadline_exceeded", `STUN ${ip}:${port}: no answer in ${timeoutMs} ms`)), timeoutMs);
    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    sock.on("error", (err) => finish(PlexdError.from(err)));
    sock.on("message", (msg, rinfo) => {
      if (rinfo.address !== ip || rinfo.port !== port) return;
      finish(undefined, { reply: msg, sourcePort: sock.address().port, fromMeshPort: false });
    });
    sock.bind(0, () => sock.send(request, port, ip, (err) => err && finish(PlexdError.from(err))));
  });
}
