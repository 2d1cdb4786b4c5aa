import { lookup } from "node:dns/promises";
import { PlexdError } from "../../proto/lib/errors.js";
import { parseHostPort, parseIPv4Int } from "../../proto/lib/net.js";
import type { Config } from "../config/schema.js";
import type { CpClient } from "../controlplane/http.js";
import { describeError } from "../controlplane/http.js";
import type { PrivClient } from "../privclient/client.js";
import type { DesiredStateStore } from "../state/desired.js";
import { isAbortError, type Clock } from "../util/clock.js";
import type { Logger } from "../util/log.js";
import { classifyNat, localIPv4Addresses, needsSecondAnswer, type NatType, type ProbeAnswer } from "./classify.js";
import { probeFromEphemeralPort, type RawProbe } from "./ephemeral-probe.js";
import { buildBindingRequest, decodeBindingResponse } from "./stun.js";

// The NAT loop (docs/architecture.md#the-control-plane-channel): discover the public endpoint through
// privhelper's StunProbe, classify the NAT, report it with PUT /v1/nodes/{id}/endpoint after
// every successful discovery, and write the peers' endpoints from the answer into the desired
// state (the mesh reconciler applies them). Runs every refresh_interval and as soon as a local
// interface address changes.

export interface NatResult {
  public_endpoint: string;
  type: NatType;
  /** Whether the observation came from the mesh port itself. */
  from_mesh_port: boolean;
  /** Clock time of the discovery. */
  at: number;
}

export interface NatLoopDeps {
  config: Pick<Config, "nat_traversal" | "mesh">;
  priv: Pick<PrivClient, "stunProbe">;
  cp: Pick<CpClient, "request">;
  nodeId: () => string;
  token: () => string;
  store: Pick<DesiredStateStore, "update">;
  log: Logger;
  clock: Clock;
  signal: AbortSignal;
  onResult?: (r: NatResult) => void;
  /**
   * Resolves once the mesh device exists: the endpoint that matters is the mapping of the mesh
   * port, which privhelper can probe only through the device. Default: at once.
   */
  meshReady?: Promise<void>;
  /** A 401 on the endpoint report (identity loss). */
  onIdentityRejected?: (status: number) => void;
  /** Host → IPv4 address; default dns.promises.lookup with family 4. */
  resolve?: (host: string) => Promise<string>;
  /** Local IPv4 addresses; default os.networkInterfaces(). */
  localAddresses?: () => ReadonlySet<string>;
  /** How often local addresses are compared between refreshes; default 5 s. */
  addressPollMs?: number;
  /** Used when privhelper has no StunProbe; default a UDP socket of the agent's own. */
  ephemeralProbe?: (ip: string, port: number, request: Uint8Array, timeoutMs: number, signal: AbortSignal) => Promise<RawProbe>;
}

export interface NatLoop {
  /** The latest successful result, undefined before the first one. */
  latest(): NatResult | undefined;
  /** The heartbeat's `nat` block (docs/architecture.md#lifecycle), omitted before the first success. */
  heartbeatBlock(): { public_endpoint: string; type: NatType } | undefined;
  /** Run a discovery now instead of waiting for the next tick. */
  refresh(): void;
  /** Settles when the signal aborts and the loop has stopped. Never rejects. */
  done: Promise<void>;
}

export interface ResolvedServer {
  name: string;
  ip: string;
  port: number;
}

/** Splits `host:port` (`[v6]:port` parses, but has no IPv4) and resolves the host to IPv4 (docs/architecture.md#the-control-plane-channel). */
export async function resolveStunServer(hostPort: string, resolve: (host: string) => Promise<string>): Promise<ResolvedServer> {
  const hp = parseHostPort(hostPort, { names: true });
  if (hp === undefined) throw new PlexdError("invalid_argument", `STUN server ${hostPort}: not host:port`);
  const ip = hp.family === undefined ? await resolve(hp.host) : hp.host;
  if (parseIPv4Int(ip) === undefined) throw new PlexdError("not_found", `STUN server ${hostPort}: no IPv4 address`);
  return { name: hostPort, ip, port: hp.port };
}

const defaultResolve = async (host: string): Promise<string> => (await lookup(host, { family: 4 })).address;

const addressKey = (s: ReadonlySet<string>): string => [...s].sort().join(",");

export function startNatLoop(d: NatLoopDeps): NatLoop {
  const nat = d.config.nat_traversal;
  const listenPort = d.config.mesh.listen_port;
  const resolve = d.resolve ?? defaultResolve;
  const localAddresses = d.localAddresses ?? (() => localIPv4Addresses());
  const pollMs = d.addressPollMs ?? 5000;
  const ephemeral = d.ephemeralProbe ?? probeFromEphemeralPort;
  let latest: NatResult | undefined;
  let wake: (() => void) | undefined;
  let refreshRequested = false;

  /** One Binding request to one server; throws on no answer or a bad reply. */
  async function probe(server: ResolvedServer): Promise<ProbeAnswer> {
    // privhelper accepts at most 10 s per probe.
    const timeoutMs = Math.min(nat.timeout.ms, 10_000);
    const req = buildBindingRequest();
    let raw: RawProbe;
    try {
      const r = await d.priv.stunProbe(
        { ip: server.ip, port: server.port, request: req.bytes, timeoutMs },
        // privhelper may wait twice (mesh-port path, then its ephemeral-port fallback), plus nft.
        { signal: d.signal, timeoutMs: 2 * timeoutMs + 5000 },
      );
      raw = { reply: r.reply, sourcePort: r.sourcePort, fromMeshPort: r.fromMeshPort };
    } catch (err) {
      if (PlexdError.from(err).code !== "unimplemented") throw err;
      raw = await ephemeral(server.ip, server.port, req.bytes, timeoutMs, d.signal);
    }
    const res = decodeBindingResponse(raw.reply, req.txid);
    if (res.unknownComprehensionRequired.length > 0) d.log.debug({ server: server.name, attributes: res.unknownComprehensionRequired }, "STUN reply carries unknown comprehension-required attributes");
    return { mapped: res.mapped, fromMeshPort: raw.fromMeshPort };
  }

  /** Servers in list order until the classification is decided; undefined when none answered. */
  async function discover(local: ReadonlySet<string>): Promise<{ first: ProbeAnswer; second: ProbeAnswer | undefined } | undefined> {
    let first: ProbeAnswer | undefined;
    for (const name of nat.stun_servers) {
      d.signal.throwIfAborted();
      try {
        const answer = await probe(await resolveStunServer(name, resolve));
        d.log.debug({ server: name, mapped: `${answer.mapped.ip}:${answer.mapped.port}`, from_mesh_port: answer.fromMeshPort }, "STUN answer");
        if (first === undefined) {
          first = answer;
          if (!needsSecondAnswer(first, listenPort, local)) return { first, second: undefined };
        } else {
          return { first, second: answer };
        }
      } catch (err) {
        if (d.signal.aborted) throw err;
        d.log.debug({ server: name, err: PlexdError.from(err).message }, "STUN server gave no usable answer");
      }
    }
    return first === undefined ? undefined : { first, second: undefined };
  }

  async function report(r: NatResult): Promise<void> {
    const res = await d.cp.request<{ peer_endpoints?: { peer_id?: unknown; endpoint?: unknown }[] | null }>({
      method: "PUT",
      path: `/v1/nodes/${encodeURIComponent(d.nodeId())}/endpoint`,
      token: d.token(),
      body: { public_endpoint: r.public_endpoint, nat_type: r.type, relay_fallback: nat.fallback === "relay" },
      signal: d.signal,
    });
    if (res.status === 401) d.onIdentityRejected?.(res.status);
    if (res.status < 200 || res.status >= 300) throw new PlexdError("unavailable", `endpoint report: ${describeError(res)}`);
    const list = Array.isArray(res.body?.peer_endpoints) ? res.body.peer_endpoints : [];
    const updates = list.filter((p): p is { peer_id: string; endpoint: string } => typeof p?.peer_id === "string" && typeof p.endpoint === "string" && p.endpoint !== "");
    // As peer_endpoint_changed does (controlplane/dispatch.ts): unknown peers are no-ops.
    const changed = d.store.update((s) => {
      const touched: string[] = [];
      for (const u of updates) {
        const peer = s.peers[u.peer_id];
        if (peer && peer.endpoint !== u.endpoint) {
          s.peers[u.peer_id] = { ...peer, endpoint: u.endpoint };
          touched.push(u.peer_id);
        }
      }
      return touched.length > 0 ? [{ peers: touched }] : undefined;
    });
    if (changed.size > 0) d.log.debug({ peers: updates.length }, "peer endpoints from the endpoint report applied");
  }

  async function cycle(local: ReadonlySet<string>): Promise<void> {
    const answers = await discover(local);
    if (answers === undefined) {
      d.log.warn({ servers: nat.stun_servers, kept: latest?.public_endpoint ?? null }, "no STUN server answered; keeping the previous endpoint, retrying next tick");
      return;
    }
    const c = classifyNat(answers.first, answers.second, listenPort, local);
    if (c.publicEndpoint === undefined) {
      d.log.warn(
        { mapped: `${answers.first.mapped.ip}:${answers.first.mapped.port}`, kept: latest?.public_endpoint ?? null },
        "STUN answered only from an ephemeral port behind NAT: no usable endpoint to report (peers need the mesh port's mapping)",
      );
      return;
    }
    const r: NatResult = { public_endpoint: c.publicEndpoint, type: c.type, from_mesh_port: answers.first.fromMeshPort, at: d.clock.now() };
    if (latest?.public_endpoint !== r.public_endpoint || latest.type !== r.type) {
      d.log.info({ old_endpoint: latest?.public_endpoint ?? null, new_endpoint: r.public_endpoint, nat_type: r.type, from_mesh_port: r.from_mesh_port }, "public endpoint");
    }
    latest = r;
    d.onResult?.(r);
    await report(r);
  }

  /** Sleeps until the next refresh, a local address change, refresh(), or abort (which throws). */
  async function waitForNextCycle(lastKey: string): Promise<void> {
    const until = d.clock.now() + nat.refresh_interval.ms;
    for (;;) {
      if (refreshRequested) return;
      const left = until - d.clock.now();
      if (left <= 0) return;
      const nudge = new AbortController();
      const onAbort = (): void => nudge.abort();
      d.signal.addEventListener("abort", onAbort, { once: true });
      wake = () => nudge.abort();
      try {
        await d.clock.sleep(Math.min(left, pollMs), nudge.signal);
      } catch (err) {
        if (!isAbortError(err)) throw err;
      } finally {
        wake = undefined;
        d.signal.removeEventListener("abort", onAbort);
      }
      d.signal.throwIfAborted();
      if (addressKey(localAddresses()) !== lastKey) {
        d.log.info("local interface addresses changed; refreshing the public endpoint");
        return;
      }
    }
  }

  const done = (async () => {
    if (d.meshReady) await Promise.race([d.meshReady, new Promise((resolve) => d.signal.addEventListener("abort", resolve, { once: true }))]);
    while (!d.signal.aborted) {
      refreshRequested = false;
      const local = localAddresses();
      try {
        await cycle(local);
      } catch (err) {
        if (d.signal.aborted) return;
        d.log.warn({ err: PlexdError.from(err).message }, "NAT discovery or endpoint report failed; retrying next tick");
      }
      try {
        await waitForNextCycle(addressKey(local));
      } catch {
        return;
      }
    }
  })();

  return {
    latest: () => latest,
    heartbeatBlock: () => (latest ? { public_endpoint: latest.public_endpoint, type: latest.type } : undefined),
    refresh: () => {
      refreshRequested = true;
      wake?.();
    },
    done,
  };
}
