import { createSocket, type Socket } from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import { ipv4ToInt, RelayEngine, RelayRejection } from "./relay-engine.js";

// Real UDP sockets on loopback: 127.0.0.1 plays side A, 127.0.0.2 side B, 127.0.0.3 a third party.

const sockets: Socket[] = [];
const engines: RelayEngine[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.close();
  for (const e of engines.splice(0)) await e.stop();
});

async function udp(address: string): Promise<{ s: Socket; port: number; got: Buffer[] }> {
  const s = createSocket("udp4");
  sockets.push(s);
  const got: Buffer[] = [];
  s.on("message", (m) => got.push(m));
  await new Promise<void>((r) => s.bind(0, address, () => r()));
  return { s, port: s.address().port, got };
}

async function engine(opts: Partial<ConstructorParameters<typeof RelayEngine>[0]> = {}): Promise<RelayEngine> {
  // Port 0 is not allowed for the listen port in config; here a free one is found by binding first.
  const probe = await udp("127.0.0.1");
  const port = probe.port;
  probe.s.close();
  sockets.splice(sockets.indexOf(probe.s), 1);
  const e = new RelayEngine({ listenPort: port, maxSessions: 10, idleMs: 60_000, bindAddress: "127.0.0.1", ...opts });
  // Bind the relay on all loopback addresses so 127.0.0.x sources can reach it.
  engines.push(e);
  await e.start();
  return e;
}

const send = (s: Socket, msg: string, port: number) => new Promise<void>((r) => s.send(Buffer.from(msg), port, "127.0.0.1", () => r()));
const settle = () => new Promise((r) => setTimeout(r, 50));
const until = async (fn: () => boolean) => {
  for (let i = 0; i < 100 && !fn(); i++) await settle();
};

describe("ipv4ToInt", () => {
  it("parses dotted quads and refuses anything else", () => {
    expect(ipv4ToInt("10.0.0.1")).toBe(0x0a000001);
    expect(ipv4ToInt("255.255.255.255")).toBe(0xffffffff);
    for (const bad of ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1..2.3", "::1", "1.2.3.4 ", "1.2.3.1234"]) expect(ipv4ToInt(bad)).toBe(-1);
  });
});

describe("RelayEngine", () => {
  it("relays both ways between the exact endpoints and counts bytes", async () => {
    const a = await udp("127.0.0.1");
    const b = await udp("127.0.0.2");
    const e = await engine();
    await e.add({ id: "s1", peerA: { id: "A", ip: "127.0.0.1", port: a.port }, peerB: { id: "B", ip: "127.0.0.2", port: b.port }, expiresAt: Date.now() + 60_000, port: e.listenPort });
    await send(a.s, "from-a", e.listenPort);
    await until(() => b.got.length > 0);
    expect(b.got.map(String)).toEqual(["from-a"]);
    await send(b.s, "from-b", e.listenPort);
    await until(() => a.got.length > 0);
    expect(a.got.map(String)).toEqual(["from-b"]);
    expect(e.counters.packets_relayed_total).toBe(2);
    expect(e.counters.bytes_relayed_total).toBe(12);
    expect(e.sessions()[0]).toMatchObject({ peer_a_confirmed: true, peer_b_confirmed: true, packets: 2 });
  });

  it("learns a side behind a symmetric NAT from its IP, and a spoofer from another port cannot take it over", async () => {
    const a = await udp("127.0.0.1");
    const b = await udp("127.0.0.2");
    const spoof = await udp("127.0.0.2");
    const learned: string[] = [];
    const e = await engine({ onLearn: (_s, peer, addr) => learned.push(`${peer}=${addr}`) });
    // The control plane saw B at another port than B now uses (the NAT picked a new one).
    await e.add({ id: "s1", peerA: { id: "A", ip: "127.0.0.1", port: a.port }, peerB: { id: "B", ip: "127.0.0.2", port: 9 }, expiresAt: Date.now() + 60_000, port: e.listenPort });
    await send(b.s, "b-hello", e.listenPort);
    await until(() => a.got.length > 0);
    expect(learned).toEqual([`B=127.0.0.2:${b.port}`]);
    await send(a.s, "a-reply", e.listenPort);
    await until(() => b.got.length > 0);
    expect(b.got.map(String)).toEqual(["a-reply"]);
    // Same IP, other port, while B is confirmed and talking: dropped, and A keeps talking to B.
    await send(spoof.s, "spoofed", e.listenPort);
    await settle();
    expect(a.got.map(String)).toEqual(["b-hello"]);
    expect(e.counters.relay_unknown_source_total).toBe(1);
    await send(a.s, "a-again", e.listenPort);
    await until(() => b.got.length > 1);
    expect(spoof.got).toEqual([]);
    expect(b.got.map(String)).toEqual(["a-reply", "a-again"]);
  });

  it("re-learns a confirmed side only after it has been silent for the re-learn time", async () => {
    let now = Date.now();
    const a = await udp("127.0.0.1");
    const b1 = await udp("127.0.0.2");
    const b2 = await udp("127.0.0.2");
    const e = await engine({ now: () => now, relearnMs: 30_000 });
    await e.add({ id: "s1", peerA: { id: "A", ip: "127.0.0.1", port: a.port }, peerB: { id: "B", ip: "127.0.0.2", port: b1.port }, expiresAt: now + 600_000, port: e.listenPort });
    await send(b1.s, "one", e.listenPort);
    await until(() => a.got.length > 0);
    now += 31_000;
    await send(b2.s, "two", e.listenPort);
    await until(() => a.got.length > 1);
    await send(a.s, "to-b2", e.listenPort);
    await until(() => b2.got.length > 0);
    expect(b2.got.map(String)).toEqual(["to-b2"]);
    expect(b1.got).toEqual([]);
  });

  it("drops a datagram two unconfirmed sides could claim, and does not learn when both sides share an IP", async () => {
    const a = await udp("127.0.0.1");
    const e = await engine();
    const exp = Date.now() + 60_000;
    await e.add({ id: "s1", peerA: { id: "A", ip: "127.0.0.1", port: 1 }, peerB: { id: "B", ip: "127.0.0.2", port: 2 }, expiresAt: exp, port: e.listenPort });
    await e.add({ id: "s2", peerA: { id: "C", ip: "127.0.0.1", port: 3 }, peerB: { id: "D", ip: "127.0.0.4", port: 4 }, expiresAt: exp, port: e.listenPort });
    await send(a.s, "who", e.listenPort);
    await until(() => e.counters.relay_ambiguous_total > 0);
    expect(e.counters.relay_ambiguous_total).toBe(1);
    expect(e.counters.packets_relayed_total).toBe(0);
    const e2 = await engine();
    await e2.add({ id: "s3", peerA: { id: "A", ip: "127.0.0.1", port: 5 }, peerB: { id: "B", ip: "127.0.0.1", port: 6 }, expiresAt: exp, port: e2.listenPort });
    await send(a.s, "x", e2.listenPort);
    await until(() => e2.counters.relay_unknown_source_total > 0);
    expect(e2.counters.packets_relayed_total).toBe(0);
  });

  it("refuses sessions beyond max_sessions, bound endpoints and past expiry, with the reason", async () => {
    const e = await engine({ maxSessions: 2 });
    const exp = Date.now() + 60_000;
    const s = (id: string, pa: number, pb: number) => ({ id, peerA: { id: "A", ip: "127.0.0.1", port: pa }, peerB: { id: "B", ip: "127.0.0.2", port: pb }, expiresAt: exp, port: e.listenPort });
    await e.add(s("s1", 1, 2));
    await expect(e.add(s("s2", 1, 3))).rejects.toThrow(/endpoint 127\.0\.0\.1:1 is already bound to session s1/);
    await e.add(s("s2", 4, 5));
    const err = await e.add(s("s3", 6, 7)).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(RelayRejection);
    expect((err as RelayRejection).reason).toBe("max_sessions (2) reached");
    e.remove("s1", "revoked");
    await expect(e.add({ ...s("s4", 8, 9), expiresAt: Date.now() - 1 })).rejects.toThrow(/expires_at is in the past/);
    expect(e.counters.rejections_total).toBe(3);
    expect(e.counters.sessions).toBe(1);
  });

  it("ends sessions at expiry and after the idle TTL; opens and closes extra ports on demand", async () => {
    let now = Date.now();
    const ended: string[] = [];
    const e = await engine({ now: () => now, idleMs: 30_000, onEnd: (id, why) => ended.push(`${id}:${why}`) });
    const extra = await udp("127.0.0.1");
    const extraPort = extra.port;
    extra.s.close();
    sockets.splice(sockets.indexOf(extra.s), 1);
    await e.add({ id: "exp", peerA: { id: "A", ip: "127.0.0.1", port: 1 }, peerB: { id: "B", ip: "127.0.0.2", port: 2 }, expiresAt: now + 10_000, port: e.listenPort });
    await e.add({ id: "idle", peerA: { id: "A", ip: "127.0.0.1", port: 3 }, peerB: { id: "B", ip: "127.0.0.2", port: 4 }, expiresAt: now + 600_000, port: extraPort });
    // The extra port is bound now.
    const taken = await new Promise<boolean>((r) => {
      const t = createSocket("udp4");
      t.once("error", () => r(true));
      t.bind(extraPort, "127.0.0.1", () => (t.close(), r(false)));
    });
    expect(taken).toBe(true);
    now += 10_000;
    e.sweep();
    expect(ended).toEqual(["exp:expired"]);
    now += 20_000;
    e.sweep();
    expect(ended).toEqual(["exp:expired", "idle:idle"]);
    expect(e.counters).toMatchObject({ sessions: 0, sessions_expired_total: 1, sessions_idle_total: 1 });
    await settle();
    const free = await new Promise<boolean>((r) => {
      const t = createSocket("udp4");
      t.once("error", () => r(false));
      t.bind(extraPort, "127.0.0.1", () => (t.close(), r(true)));
    });
    expect(free).toBe(true);
  });
});
