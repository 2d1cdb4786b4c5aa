import { lookup as dnsLookup } from "node:dns/promises";
import { formatEndpoint, parseHostPort } from "../../proto/lib/net.js";
import type { Logger } from "../util/log.js";
import type { Peer } from "./peer.js";

// DNS-name endpoints (`host:port` with a name). privhelper takes only IP:port, so the agent
// resolves each name through the node's own resolver (getaddrinfo: /etc/hosts, then the
// servers of /etc/resolv.conf), sends the address, and resolves every name in use again on the
// reconcile interval: a peer whose name moves is followed. Decided here:
// - while a name's first look-up runs, its peers are configured without an endpoint
//   (WireGuard learns one from the peer's own handshake);
// - a name that has never resolved quarantines its peers, with the resolver's error as the
//   reason; each reconcile tries again, and the first answer admits them;
// - a name that resolved once and then fails keeps its last address (a DNS outage does not
//   take working tunnels down); the failure is logged once.

export type Lookup = (host: string) => Promise<string>;

/** The first address getaddrinfo gives (the resolver's order, IPv4 or IPv6). */
export const systemLookup: Lookup = async (host) => (await dnsLookup(host, { verbatim: true })).address;

interface NameState {
  /** The last address it resolved to. */
  address?: string | undefined;
  /** Why the last look-up failed. */
  error?: string | undefined;
  inFlight?: Promise<void> | undefined;
}

export class EndpointResolver {
  readonly #names = new Map<string, NameState>();
  /** The name each peer's endpoint uses, as last asked. */
  readonly #peerName = new Map<string, string>();
  readonly #lookup: Lookup;
  readonly #log: Logger;
  readonly #onChange: (peerIds: string[]) => void;

  /** `onChange`: peers whose endpoint's address (or failure) changed, to decide again. */
  constructor(d: { lookup?: Lookup; log: Logger; onChange: (peerIds: string[]) => void }) {
    this.#lookup = d.lookup ?? systemLookup;
    this.#log = d.log;
    this.#onChange = d.onChange;
  }

  /** For admission: the cached answer; an unknown name starts its first look-up. */
  resolve = (host: string, port: number, peerId: string): string | undefined | { error: string } => {
    this.#peerName.set(peerId, host);
    const s = this.#names.get(host);
    if (s === undefined) {
      void this.#resolveName(host);
      return undefined;
    }
    if (s.address !== undefined) return formatEndpoint(s.address, port);
    if (s.error !== undefined) return { error: `${host} does not resolve (${s.error}); tried again every reconcile` };
    return undefined;
  };

  /** Resolves again every name the peers' endpoints use (the reconcile interval); names no peer uses are forgotten. */
  async refresh(peers: Readonly<Record<string, Peer>>): Promise<void> {
    const inUse = new Set<string>();
    for (const p of Object.values(peers)) {
      const hp = typeof p.endpoint === "string" && p.endpoint !== "" ? parseHostPort(p.endpoint, { names: true }) : undefined;
      if (hp !== undefined && hp.family === undefined) inUse.add(hp.host);
    }
    for (const name of this.#names.keys()) if (!inUse.has(name)) this.#names.delete(name);
    for (const [id, name] of this.#peerName) if (!(id in peers) || !inUse.has(name)) this.#peerName.delete(id);
    await Promise.all([...inUse].map((name) => this.#resolveName(name)));
  }

  /** One look-up per name at a time; peers using it are told when the outcome changed. */
  #resolveName(name: string): Promise<void> {
    const s = this.#names.get(name) ?? {};
    this.#names.set(name, s);
    s.inFlight ??= this.#lookup(name)
      .then(
        (address) => {
          if (address === s.address && s.error === undefined) return false;
          if (s.address !== undefined && address !== s.address) this.#log.info({ host: name, from: s.address, to: address }, "endpoint name moved");
          s.address = address;
          s.error = undefined;
          return true;
        },
        (err: unknown) => {
          const code = (err as NodeJS.ErrnoException).code ?? String(err);
          if (s.error === code) return false;
          s.error = code;
          if (s.address !== undefined) this.#log.warn({ host: name, error: code, keeping: s.address }, "endpoint name does not resolve; keeping its last address");
          else this.#log.warn({ host: name, error: code }, "endpoint name does not resolve");
          // With a last address nothing changes for its peers.
          return s.address === undefined;
        },
      )
      .then((changed) => {
        s.inFlight = undefined;
        if (!changed || this.#names.get(name) !== s) return;
        const ids = [...this.#peerName].filter(([, n]) => n === name).map(([id]) => id);
        if (ids.length > 0) this.#onChange(ids);
      });
    return s.inFlight;
  }
}
