import { PlexdError } from "../../proto/lib/errors.js";
import type { Config } from "../config/schema.js";
import type { CpClient } from "../controlplane/http.js";
import { describeError } from "../controlplane/http.js";
import type { PrivClient } from "../privclient/client.js";
import type { DesiredStateStore } from "../state/desired.js";
import type { Clock } from "../util/clock.js";
import type { Logger } from "../util/log.js";
import { classify, localIPv4Addresses, parseBindingResponse, bindingRequest, probeFromEphemeralPort, resolveServer, type Discovery, type ProbeResult } from "./discovery.js";

// The NAT loop (bridge spec §1.2–1.3, node-agent §3.6): discover the public endpoint, report
// it, and write the peers' endpoints from the answer into the desired state.

export interface EndpointLoopDeps {
  config: Config;
  priv: PrivClient;
  cp: CpClient;
  nodeId: () => string;
  token: () => string;
  store: DesiredStateStore;
  clock: Clock;
  log: Logger;
  signal: AbortSignal;
  onResult: (d: Discovery) => void;
}

/** One probe: from the mesh port through privhelper when it can, else from an ephemeral port. */
async function probe(d: EndpointLoopDeps, server: { ip: string; port: number }): Promise<ProbeResult> {
  const timeoutMs = d.config.nat_traversal.timeout.ms;
  const req = bindingRequest();
  try {
    const r = await d.priv.stunProbe({ ip: server.ip, port: server.port, request: req.bytes, timeoutMs }, { signal: d.signal, timeoutMs: timeoutMs + 2000 });
    const mapped = parseBindingResponse(Buffer.from(r.reply), req.txid);
    if (!mapped) throw new PlexdError("invalid_argument", "STUN reply was not a Binding success for our transaction");
    return { mapped, fromMeshPort: r.fromMeshPort };
  } catch (err) {
    const e = PlexdError.from(err);
    if (e.code !== "unimplemented" && e.code !== "unavailable" && e.code !== "failed_precondition") throw e;
    return probeFromEphemeralPort(server.ip, server.port, timeoutMs, d.signal);
  }
}

export async function discoverOnce(d: EndpointLoopDeps): Promise<Discovery | undefined> {
  const answers: ProbeResult[] = [];
  for (const s of d.config.nat_traversal.stun_servers) {
    if (answers.length === 2) break;
    try {
      answers.push(await probe(d, await resolveServer(s)));
    } catch (err) {
      const e = PlexdError.from(err);
      if (e.code === "cancelled") throw e;
      d.log.debug({ server: s, err: e.message }, "STUN server did not answer");
    }
  }
  const [first, second] = answers;
  if (!first) return undefined;
  return classify(first, second, d.config.mesh.listen_port, localIPv4Addresses());
}

async function report(d: EndpointLoopDeps, r: Discovery): Promise<void> {
  const res = await d.cp.request<{ peer_endpoints?: { peer_id: string; endpoint: string }[] | null }>({
    method: "PUT",
    path: `/v1/nodes/${encodeURIComponent(d.nodeId())}/endpoint`,
    token: d.token(),
    body: { public_endpoint: r.publicEndpoint, nat_type: r.natType, relay_fallback: d.config.nat_traversal.fallback === "relay" },
    signal: d.signal,
  });
  if (res.status < 200 || res.status >= 300) throw new PlexdError("unavailable", `endpoint report: ${describeError(res)}`);
  const updates = (res.body.peer_endpoints ?? []).filter((p) => p.endpoint !== "");
  d.store.update((s) => {
    let changed = false;
    for (const u of updates) {
      const peer = s.peers[u.peer_id];
      if (peer && peer.endpoint !== u.endpoint) {
        s.peers[u.peer_id] = { ...peer, endpoint: u.endpoint };
        changed = true;
      }
    }
    return changed ? ["peers"] : undefined;
  });
}

export async function runEndpointLoop(d: EndpointLoopDeps): Promise<void> {
  let last: Discovery | undefined;
  while (!d.signal.aborted) {
    try {
      const r = await discoverOnce(d);
      if (r === undefined) d.log.warn({ servers: d.config.nat_traversal.stun_servers }, "no usable STUN answer; keeping the previous endpoint");
      else {
        if (last?.publicEndpoint !== r.publicEndpoint) d.log.info({ old_endpoint: last?.publicEndpoint ?? null, new_endpoint: r.publicEndpoint, nat_type: r.natType }, "public endpoint");
        last = r;
        d.onResult(r);
        await report(d, r);
      }
    } catch (err) {
      const e = PlexdError.from(err);
      if (e.code === "cancelled") return;
      d.log.warn({ err: e.message }, "NAT discovery or endpoint report failed; retrying next tick");
    }
    try {
      await d.clock.sleep(d.config.nat_traversal.refresh_interval.ms, d.signal);
    } catch {
      return;
    }
  }
}
