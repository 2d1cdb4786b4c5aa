// PingPeers and Traceroute: iputils ping and traceroute over the mesh interface, to mesh
// addresses only (parsed and re-serialised), with bounded counts; output parsed into numbers.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { PingPeersRequest, PingPeersResponseSchema, PingResultSchema, TracerouteRequest, TracerouteResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import { formatIPv4Int, isMeshIp, parseIPv4Int } from "../../proto/lib/net.js";
import type { PrivConfig } from "../config.js";
import type { Runner } from "../os/run.js";

function meshAddress(a: string): string {
  const n = parseIPv4Int(a);
  if (n === undefined || !isMeshIp(a)) throw new PlexdError("invalid_argument", `not a mesh address: ${JSON.stringify(a)}`);
  return formatIPv4Int(n);
}

/** "3 packets transmitted, 2 received" and "rtt min/avg/max/mdev = 0.1/0.2/0.3/0.0 ms" of ping -q. */
export function parsePing(address: string, out: string): MessageInitShape<typeof PingResultSchema> {
  const counts = /(\d+) packets transmitted, (\d+) received/.exec(out);
  const rtt = /= ([\d.]+)\/([\d.]+)\/([\d.]+)\//.exec(out);
  return { address, sent: Number(counts?.[1] ?? 0), received: Number(counts?.[2] ?? 0), rttMinMs: Number(rtt?.[1] ?? 0), rttAvgMs: Number(rtt?.[2] ?? 0), rttMaxMs: Number(rtt?.[3] ?? 0) };
}

/** Hop lines of `traceroute -n -q 1`: " 1  10.100.1.2  0.412 ms" or " 2  *". */
export function parseTraceroute(out: string): { hop: number; address: string; rttMs: number }[] {
  const hops = out.split("\n").map((l) => /^\s*(\d+)\s+(?:(\d+\.\d+\.\d+\.\d+)\s+([\d.]+) ms|\*)/.exec(l));
  return hops.filter((m) => m !== null).map((m) => ({ hop: Number(m[1]), address: m[2] ?? "", rttMs: Number(m[3] ?? 0) }));
}

export function makePingPeers(deps: { config: PrivConfig; runner: Runner }) {
  return async (req: PingPeersRequest, ctx: { signal: AbortSignal }): Promise<MessageInitShape<typeof PingPeersResponseSchema>> => {
    if (req.addresses.length > 64) throw new PlexdError("invalid_argument", "at most 64 addresses per call");
    if (req.count < 1 || req.count > 20) throw new PlexdError("invalid_argument", "count must be 1-20");
    const args = ["-n", "-q", "-c", String(req.count), "-i", "0.2", "-W", "1", "-I", deps.config.meshInterface];
    const ping = (a: string) => deps.runner.run("ping", [...args, a], { allowFailure: true, timeoutMs: 10_000 + req.count * 1000, signal: ctx.signal });
    return { results: await Promise.all(req.addresses.map(meshAddress).map(async (a) => parsePing(a, (await ping(a)).stdout))) };
  };
}

export function makeTraceroute(deps: { config: PrivConfig; runner: Runner }) {
  return async (req: TracerouteRequest, ctx: { signal: AbortSignal }): Promise<MessageInitShape<typeof TracerouteResponseSchema>> => {
    if (req.maxHops < 1 || req.maxHops > 64) throw new PlexdError("invalid_argument", "max_hops must be 1-64");
    const address = meshAddress(req.address);
    const r = await deps.runner.run("traceroute", ["-n", "-q", "1", "-w", "1", "-m", String(req.maxHops), "-i", deps.config.meshInterface, address], { allowFailure: true, timeoutMs: 5000 + req.maxHops * 1500, signal: ctx.signal });
    if (r.exitCode !== 0 && r.stdout === "") throw new PlexdError("unavailable", `traceroute: ${r.stderr.trim().slice(0, 200)}`);
    const hops = parseTraceroute(r.stdout);
    return { hops, reached: hops.some((h) => h.address === address) };
  };
}
