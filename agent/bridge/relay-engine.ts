import { createSocket, type RemoteInfo, type Socket } from "node:dgram";

// The bridge's UDP relay (docs/bridge.md#relay): moves opaque WireGuard datagrams between the two
// sides of a session. It never holds a key and never looks inside a datagram. One socket per
// relay port; a datagram is matched by (port, exact source ip:port) with one Map lookup on a
// numeric key, so the hot path builds no strings and no objects of its own.

/** A session after its endpoints were resolved to IPv4 literals. */
export interface RelaySessionInput {
  id: string;
  peerA: { id: string; ip: string; port: number };
  peerB: { id: string; ip: string; port: number };
  /** Absolute expiry, ms since the epoch. */
  expiresAt: number;
  port: number;
}

export type RelayEndReason = "expired" | "idle" | "revoked" | "replaced" | "stopped";

export interface RelayEngineOptions {
  /** The relay's own port: always open while the engine runs. */
  listenPort: number;
  maxSessions: number;
  /** A session with no datagram in either direction for this long ends. */
  idleMs: number;
  /** A confirmed side silent this long may be re-learned from a new source port. */
  relearnMs?: number;
  bindAddress?: string;
  now?: () => number;
  /** How often expiry and idleness are checked. */
  sweepMs?: number;
  onLearn?: (session: string, peer: string, address: string) => void;
  onEnd?: (session: string, reason: RelayEndReason) => void;
  onUnknownSource?: (port: number, address: string) => void;
}

/** A session the relay refused to add; `reason` says why, for logs and status. */
export class RelayRejection extends Error {
  readonly reason: string;
  constructor(reason: string) {
    super(reason);
    this.reason = reason;
  }
}

interface Side {
  peerId: string;
  /** The side's IP as assigned, numeric: learning accepts only this source IP. */
  ip: number;
  /** Current address: the assigned one until traffic confirms (or learning moves) it. */
  address: string;
  port: number;
  key: number;
  confirmed: boolean;
  lastRx: number;
  session: Session;
  other: Side;
}

interface Session {
  id: string;
  port: number;
  a: Side;
  b: Side;
  /** Both sides behind one IP: learning could not tell them apart, so it is off. */
  sharedIp: boolean;
  expiresAt: number;
  lastActivity: number;
  createdAt: number;
  bytes: number;
  packets: number;
  input: RelaySessionInput;
}

interface PortState {
  port: number;
  socket: Socket;
  /** Exact source (ip * 65536 + port) → side. */
  exact: Map<number, Side>;
  /** Assigned IP → sides that may be learned from it. */
  byIp: Map<number, Side[]>;
  sessions: number;
}

export interface RelayCounters {
  sessions: number;
  bytes_relayed_total: number;
  packets_relayed_total: number;
  relay_unknown_source_total: number;
  relay_ambiguous_total: number;
  rejections_total: number;
  send_errors_total: number;
  sessions_expired_total: number;
  sessions_idle_total: number;
  sessions_revoked_total: number;
}

export interface RelaySessionView {
  session_id: string;
  port: number;
  peer_a_id: string;
  peer_a_address: string;
  peer_a_confirmed: boolean;
  peer_b_id: string;
  peer_b_address: string;
  peer_b_confirmed: boolean;
  bytes: number;
  packets: number;
  expires_at: number;
  idle_ms: number;
}

/** IPv4 dotted quad → unsigned 32-bit number, or -1. No allocation: this runs per datagram. */
export function ipv4ToInt(s: string): number {
  let acc = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return -1;
      acc = acc * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      part = part * 10 + (c - 48);
      if (++digits > 3 || part > 255) return -1;
    } else return -1;
  }
  if (dots !== 3 || digits === 0) return -1;
  return acc * 256 + part;
}

const endpointKey = (ip: number, port: number): number => ip * 65536 + port;

export class RelayEngine {
  readonly #o: Required<Omit<RelayEngineOptions, "onLearn" | "onEnd" | "onUnknownSource">> & Pick<RelayEngineOptions, "onLearn" | "onEnd" | "onUnknownSource">;
  readonly #ports = new Map<number, PortState>();
  readonly #sessions = new Map<string, Session>();
  #sweep: NodeJS.Timeout | undefined;
  #running = false;
  readonly counters: RelayCounters = {
    sessions: 0,
    bytes_relayed_total: 0,
    packets_relayed_total: 0,
    relay_unknown_source_total: 0,
    relay_ambiguous_total: 0,
    rejections_total: 0,
    send_errors_total: 0,
    sessions_expired_total: 0,
    sessions_idle_total: 0,
    sessions_revoked_total: 0,
  };

  constructor(opts: RelayEngineOptions) {
    this.#o = { relearnMs: 30_000, bindAddress: "0.0.0.0", now: Date.now, sweepMs: 1000, ...opts };
  }

  get listenPort(): number {
    return this.#o.listenPort;
  }

  get running(): boolean {
    return this.#running;
  }

  /** Binds the relay's own port. */
  async start(): Promise<void> {
    if (this.#running) return;
    await this.#openPort(this.#o.listenPort);
    this.#running = true;
    this.#sweep = setInterval(() => this.sweep(), this.#o.sweepMs);
    this.#sweep.unref();
  }

  /** Ends every session and closes every socket. */
  async stop(): Promise<void> {
    clearInterval(this.#sweep);
    this.#sweep = undefined;
    for (const id of [...this.#sessions.keys()]) this.remove(id, "stopped");
    const closing = [...this.#ports.values()].map((ps) => new Promise<void>((r) => ps.socket.close(() => r())));
    this.#ports.clear();
    this.#running = false;
    await Promise.all(closing);
  }

  has(id: string): boolean {
    return this.#sessions.has(id);
  }

  input(id: string): RelaySessionInput | undefined {
    return this.#sessions.get(id)?.input;
  }

  ids(): string[] {
    return [...this.#sessions.keys()];
  }

  /** Adds a session; throws RelayRejection (and counts it) when it cannot be relayed. */
  async add(s: RelaySessionInput): Promise<void> {
    try {
      await this.#add(s);
    } catch (err) {
      this.counters.rejections_total++;
      if (err instanceof RelayRejection) throw err;
      throw new RelayRejection(err instanceof Error ? err.message : String(err));
    }
  }

  async #add(s: RelaySessionInput): Promise<void> {
    if (!this.#running) throw new RelayRejection("relay is not running");
    if (this.#sessions.has(s.id)) throw new RelayRejection(`session ${s.id} exists`);
    const now = this.#o.now();
    if (s.expiresAt <= now) throw new RelayRejection("expires_at is in the past");
    const ipA = ipv4ToInt(s.peerA.ip);
    const ipB = ipv4ToInt(s.peerB.ip);
    if (ipA < 0 || ipB < 0) throw new RelayRejection("endpoints must be IPv4 addresses");
    for (const p of [s.peerA.port, s.peerB.port, s.port]) if (!Number.isInteger(p) || p < 1 || p > 65535) throw new RelayRejection(`port ${p} out of range`);
    const keyA = endpointKey(ipA, s.peerA.port);
    const keyB = endpointKey(ipB, s.peerB.port);
    if (keyA === keyB) throw new RelayRejection("both sides have the same endpoint");
    const existing = this.#ports.get(s.port);
    for (const [key, ep] of [
      [keyA, s.peerA],
      [keyB, s.peerB],
    ] as const) {
      const holder = existing?.exact.get(key);
      if (holder) throw new RelayRejection(`endpoint ${ep.ip}:${ep.port} is already bound to session ${holder.session.id} on port ${s.port}`);
    }
    // Last: a session that is wrong in itself is refused for that, whatever the load.
    if (this.#sessions.size >= this.#o.maxSessions) throw new RelayRejection(`max_sessions (${this.#o.maxSessions}) reached`);
    const ps = existing ?? (await this.#openPort(s.port));
    // A concurrent add may have taken the slot or the endpoint while the socket was binding.
    if (this.#sessions.size >= this.#o.maxSessions || this.#sessions.has(s.id) || ps.exact.has(keyA) || ps.exact.has(keyB)) {
      this.#closeIfUnused(ps);
      throw new RelayRejection(this.#sessions.size >= this.#o.maxSessions ? `max_sessions (${this.#o.maxSessions}) reached` : `session ${s.id} conflicts with one added meanwhile`);
    }
    const session = { id: s.id, port: s.port, sharedIp: ipA === ipB, expiresAt: s.expiresAt, lastActivity: now, createdAt: now, bytes: 0, packets: 0, input: s } as Session;
    const side = (ep: { id: string; ip: string; port: number }, ip: number, key: number): Side =>
      ({ peerId: ep.id, ip, address: ep.ip, port: ep.port, key, confirmed: false, lastRx: 0, session }) as Side;
    session.a = side(s.peerA, ipA, keyA);
    session.b = side(s.peerB, ipB, keyB);
    session.a.other = session.b;
    session.b.other = session.a;
    for (const x of [session.a, session.b]) {
      ps.exact.set(x.key, x);
      const list = ps.byIp.get(x.ip);
      if (list) list.push(x);
      else ps.byIp.set(x.ip, [x]);
    }
    ps.sessions++;
    this.#sessions.set(s.id, session);
    this.counters.sessions = this.#sessions.size;
  }

  /** Ends a session; false when it was not there. */
  remove(id: string, reason: RelayEndReason): boolean {
    const s = this.#sessions.get(id);
    if (!s) return false;
    this.#sessions.delete(id);
    const ps = this.#ports.get(s.port);
    if (ps) {
      for (const x of [s.a, s.b]) {
        if (ps.exact.get(x.key) === x) ps.exact.delete(x.key);
        const list = ps.byIp.get(x.ip);
        if (list) {
          const rest = list.filter((y) => y !== x);
          if (rest.length === 0) ps.byIp.delete(x.ip);
          else ps.byIp.set(x.ip, rest);
        }
      }
      ps.sessions--;
      this.#closeIfUnused(ps);
    }
    this.counters.sessions = this.#sessions.size;
    if (reason === "expired") this.counters.sessions_expired_total++;
    else if (reason === "idle") this.counters.sessions_idle_total++;
    else if (reason === "revoked") this.counters.sessions_revoked_total++;
    this.#o.onEnd?.(id, reason);
    return true;
  }

  /** Ends sessions past `expires_at` or idle for the TTL (runs on a timer; public for tests). */
  sweep(): void {
    const now = this.#o.now();
    for (const s of [...this.#sessions.values()]) {
      if (now >= s.expiresAt) this.remove(s.id, "expired");
      else if (now - s.lastActivity >= this.#o.idleMs) this.remove(s.id, "idle");
    }
  }

  sessions(): RelaySessionView[] {
    const now = this.#o.now();
    return [...this.#sessions.values()].map((s) => ({
      session_id: s.id,
      port: s.port,
      peer_a_id: s.a.peerId,
      peer_a_address: `${s.a.address}:${s.a.port}`,
      peer_a_confirmed: s.a.confirmed,
      peer_b_id: s.b.peerId,
      peer_b_address: `${s.b.address}:${s.b.port}`,
      peer_b_confirmed: s.b.confirmed,
      bytes: s.bytes,
      packets: s.packets,
      expires_at: s.expiresAt,
      idle_ms: now - s.lastActivity,
    }));
  }

  async #openPort(port: number): Promise<PortState> {
    const socket = createSocket({ type: "udp4" });
    const ps: PortState = { port, socket, exact: new Map(), byIp: new Map(), sessions: 0 };
    socket.on("message", (msg, rinfo) => this.#onMessage(ps, msg, rinfo));
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind({ port, address: this.#o.bindAddress, exclusive: true }, () => {
        socket.off("error", reject);
        resolve();
      });
    }).catch((err: unknown) => {
      socket.close();
      throw new RelayRejection(`cannot bind UDP port ${port}: ${err instanceof Error ? err.message : String(err)}`);
    });
    // Sends go without a callback (one closure less per datagram); their failures land here.
    socket.on("error", () => this.counters.send_errors_total++);
    // Bursts of a fast tunnel outrun the default socket buffers; the kernel caps these at rmem_max/wmem_max.
    try {
      socket.setRecvBufferSize(4 << 20);
      socket.setSendBufferSize(4 << 20);
    } catch {
      // kept at the system default
    }
    this.#ports.set(port, ps);
    return ps;
  }

  #closeIfUnused(ps: PortState): void {
    if (ps.sessions > 0 || ps.port === this.#o.listenPort || this.#ports.get(ps.port) !== ps) return;
    this.#ports.delete(ps.port);
    ps.socket.close();
  }

  #onMessage(ps: PortState, msg: Buffer, rinfo: RemoteInfo): void {
    const ip = ipv4ToInt(rinfo.address);
    const key = ip < 0 ? -1 : endpointKey(ip, rinfo.port);
    let side = ps.exact.get(key);
    const now = this.#o.now();
    if (side === undefined) {
      const learned = ip < 0 ? undefined : this.#learn(ps, ip, key, rinfo, now);
      // null: ambiguous, already counted as such.
      if (learned === null) return;
      if (learned === undefined) {
        this.counters.relay_unknown_source_total++;
        this.#o.onUnknownSource?.(ps.port, `${rinfo.address}:${rinfo.port}`);
        return;
      }
      side = learned;
    } else if (!side.confirmed) side.confirmed = true;
    side.lastRx = now;
    const s = side.session;
    s.lastActivity = now;
    s.bytes += msg.length;
    s.packets++;
    this.counters.bytes_relayed_total += msg.length;
    this.counters.packets_relayed_total++;
    const to = side.other;
    ps.socket.send(msg, to.port, to.address);
  }

  /**
   * A symmetric NAT shows the relay another source port than the control plane saw. A side is
   * learned from the first datagram from its assigned IP while unconfirmed, or after
   * `relearnMs` of silence; a confirmed, talking side cannot be taken over from another port.
   */
  #learn(ps: PortState, ip: number, key: number, rinfo: RemoteInfo, now: number): Side | undefined | null {
    const candidates = ps.byIp.get(ip);
    if (candidates === undefined) return undefined;
    let pick: Side | undefined;
    let n = 0;
    for (const x of candidates) {
      if (x.session.sharedIp) continue;
      if (!x.confirmed || now - x.lastRx >= this.#o.relearnMs) {
        pick = x;
        n++;
      }
    }
    if (n > 1) {
      this.counters.relay_ambiguous_total++;
      return null;
    }
    if (pick === undefined) return undefined;
    if (ps.exact.get(pick.key) === pick) ps.exact.delete(pick.key);
    pick.key = key;
    pick.address = rinfo.address;
    pick.port = rinfo.port;
    pick.confirmed = true;
    ps.exact.set(key, pick);
    this.#o.onLearn?.(pick.session.id, pick.peerId, `${rinfo.address}:${rinfo.port}`);
    return pick;
  }
}
