import { randomBytes } from "node:crypto";
import * as ed from "@noble/ed25519";
import { sha512 } from "@noble/hashes/sha2.js";
import canonicalize from "canonicalize";
import { afterEach, describe, expect, it } from "vitest";
import { MockcpClient, type EventStream } from "../control/client.js";
import { createMockcp, type Mockcp, type MockcpOptions } from "../mockcp.js";

ed.hashes.sha512 = sha512;

const seed1 = Buffer.from(Uint8Array.from({ length: 32 }, (_, i) => i)).toString("hex");
const seed2 = Buffer.from(Uint8Array.from({ length: 32 }, (_, i) => i + 32)).toString("hex");
const K1 = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=";
const K2 = "Kay64UG8yvCyLhqU000LxzYeUm0L/hLIl5S8kyKWbdc=";

interface Envelope {
  event_type: string;
  event_id: string;
  issued_at: string;
  nonce: string;
  payload: Record<string, unknown>;
  signature: string;
}

/** Independent check (noble + canonicalize), not mockcp's own signer. */
function verifies(env: Envelope, publicKey: string): boolean {
  const msg = canonicalize({ event_type: env.event_type, event_id: env.event_id, issued_at: env.issued_at, nonce: env.nonce, payload: env.payload });
  const sig = Buffer.from(env.signature, "base64");
  if (msg === undefined || sig.length !== 64) return false;
  return ed.verify(sig, Buffer.from(msg, "utf8"), Buffer.from(publicKey, "base64"));
}

const running: Mockcp[] = [];
const streams: EventStream[] = [];
afterEach(async () => {
  for (const s of streams.splice(0)) s.close();
  await Promise.all(running.splice(0).map((m) => m.stop()));
});

interface Node {
  node_id: string;
  identity_token: string;
  mesh_ip: string;
  signing_public_key: string;
}

async function setup(opts: MockcpOptions = {}): Promise<{ cp: Mockcp; client: MockcpClient; clock: { now: number } }> {
  const clock = { now: Date.parse("2025-01-15T10:30:00Z") };
  const cp = createMockcp({ signingSeed: seed1, now: () => clock.now, ...opts });
  running.push(cp);
  await cp.start();
  return { cp, client: new MockcpClient({ baseUrl: cp.urls[0] ?? "" }), clock };
}

async function register(client: MockcpClient, hostname: string): Promise<Node> {
  const { token } = await client.createToken();
  const r = await client.request<Node>("POST", "/v1/register", { body: { token, public_key: randomBytes(32).toString("base64"), hostname } });
  expect(r.status).toBe(201);
  return r.body;
}

async function open(client: MockcpClient, node: Node, lastEventId?: string): Promise<EventStream> {
  const s = await client.openEvents(node.node_id, node.identity_token, lastEventId === undefined ? {} : { lastEventId });
  streams.push(s);
  expect(s.status).toBe(200);
  await client.waitFor(async () => (await client.getNode(node.node_id)).streams > 0, { what: "stream registered" });
  return s;
}

async function nextEnvelope(s: EventStream): Promise<{ id: string | undefined; event: string | undefined; env: Envelope; raw: string }> {
  const m = await s.next();
  return { id: m.id, event: m.event, env: JSON.parse(m.data) as Envelope, raw: m.data };
}

/** Resolves with whatever arrives within `ms`, for "nothing from the past" checks. */
async function drain(s: EventStream, ms: number): Promise<string[]> {
  const got: string[] = [];
  const until = Date.now() + ms;
  for (;;) {
    const left = until - Date.now();
    if (left <= 0) return got;
    try {
      got.push((await s.next(left)).id ?? "");
    } catch {
      return got;
    }
  }
}

describe("SSE stream", () => {
  it("frames signed envelopes with id/event/data and a fresh nonce per transmission", async () => {
    const { client, clock } = await setup();
    const a = await register(client, "a");
    expect(a.signing_public_key).toBe(K1);
    const s = await open(client, a);
    const pushed = await client.pushEvent(a.node_id, { event_type: "rotate_keys", payload: { reason: "admin" } });
    expect(pushed.delivered).toBe(1);
    const got = await nextEnvelope(s);
    expect(got.id).toBe(pushed.event_id);
    expect(got.event).toBe("rotate_keys");
    expect(got.raw).not.toContain("\n");
    expect(got.env).toMatchObject({ event_type: "rotate_keys", event_id: pushed.event_id, payload: { reason: "admin" }, issued_at: new Date(clock.now).toISOString() });
    expect(got.env.nonce).toMatch(/^[0-9a-f]{32}$/);
    expect(verifies(got.env, K1)).toBe(true);
    expect(verifies(got.env, K2)).toBe(false);
  });

  it("rejects unknown nodes with 404 and wrong tokens with 401", async () => {
    const { client } = await setup();
    const a = await register(client, "a");
    expect((await client.openEvents("n_missing", a.identity_token)).status).toBe(404);
    expect((await client.openEvents(a.node_id, "wrong")).status).toBe(401);
  });

  it("replays after a known Last-Event-ID with fresh issued_at/nonce/signature (TV-10)", async () => {
    const { client, clock } = await setup();
    const a = await register(client, "a");
    const s1 = await open(client, a);
    const first: Envelope[] = [];
    for (let i = 1; i <= 5; i++) {
      await client.pushEvent(a.node_id, { event_type: "peer_removed", payload: { peer_id: `n_p${i}` }, event_id: `e${i}` });
      first.push((await nextEnvelope(s1)).env);
    }
    s1.close();
    clock.now += 5000;
    const s2 = await open(client, a, "e2");
    const replayed: Envelope[] = [];
    for (let i = 0; i < 3; i++) replayed.push((await nextEnvelope(s2)).env);
    expect(replayed.map((e) => e.event_id)).toEqual(["e3", "e4", "e5"]);
    for (const [i, e] of replayed.entries()) {
      const orig = first[i + 2];
      expect(e.payload).toEqual(orig?.payload);
      expect(e.event_type).toBe(orig?.event_type);
      expect(e.nonce).not.toBe(orig?.nonce);
      expect(e.issued_at).not.toBe(orig?.issued_at);
      expect(e.issued_at).toBe(new Date(clock.now).toISOString());
      expect(verifies(e, K1)).toBe(true);
    }
    // Then live events follow on the same stream.
    await client.pushEvent(a.node_id, { event_type: "peer_removed", payload: { peer_id: "n_live" }, event_id: "e6" });
    expect((await nextEnvelope(s2)).id).toBe("e6");
    s2.close();

    // Unknown id: nothing from the past, but live events still flow.
    const s3 = await open(client, a, "no-such-event");
    expect(await drain(s3, 300)).toEqual([]);
    await client.pushEvent(a.node_id, { event_type: "peer_removed", payload: { peer_id: "n_x" }, event_id: "e7" });
    expect((await nextEnvelope(s3)).id).toBe("e7");
    s3.close();
    // No Last-Event-ID at all: live only as well.
    const s4 = await open(client, a);
    expect(await drain(s4, 300)).toEqual([]);
  });

  it("does not replay an action_request issued more than 300 s ago", async () => {
    const { client, clock } = await setup();
    const a = await register(client, "a");
    await client.pushEvent(a.node_id, { event_type: "peer_removed", payload: { peer_id: "n_0" }, event_id: "anchor" });
    await client.pushEvent(a.node_id, { event_type: "action_request", payload: { execution_id: "exec_1", action: "diagnostics.collect", type: "builtin" }, event_id: "act" });
    await client.pushEvent(a.node_id, { event_type: "peer_removed", payload: { peer_id: "n_1" }, event_id: "after" });
    clock.now += 300_000;
    const s1 = await open(client, a, "anchor");
    expect(await drain(s1, 300)).toEqual(["act", "after"]);
    s1.close();
    clock.now += 1000;
    const s2 = await open(client, a, "anchor");
    expect(await drain(s2, 300)).toEqual(["after"]);
  });

  it("writes a keepalive comment whenever the interval passes in silence", async () => {
    const { client } = await setup({ keepaliveMs: 100 });
    const a = await register(client, "a");
    const s = await open(client, a);
    await client.waitFor(async () => s.comments.length >= 2, { timeoutMs: 3000, what: "two keepalives" });
    expect(s.comments.every((c) => c === "keepalive")).toBe(true);
    expect(s.ended).toBe(false);
  });

  it("keeps at least minEvents in the replay buffer", async () => {
    const { client, clock } = await setup({ eventLog: { minEvents: 3, minAgeMs: 1000 } });
    const a = await register(client, "a");
    for (let i = 1; i <= 5; i++) await client.pushEvent(a.node_id, { event_type: "peer_removed", payload: {}, event_id: `e${i}` });
    // Still young: everything kept.
    expect((await client.events(a.node_id)).map((e) => e.event_id)).toEqual(["e1", "e2", "e3", "e4", "e5"]);
    clock.now += 2000;
    await client.pushEvent(a.node_id, { event_type: "peer_removed", payload: {}, event_id: "e6" });
    expect((await client.events(a.node_id)).map((e) => e.event_id)).toEqual(["e4", "e5", "e6"]);
    // e1 fell out of the buffer: it is now an unknown id.
    const s = await open(client, a, "e1");
    expect(await drain(s, 300)).toEqual([]);
  });

  it("refuses a reused event_id on push", async () => {
    const { client } = await setup();
    const a = await register(client, "a");
    await client.pushEvent(a.node_id, { event_type: "peer_removed", payload: {}, event_id: "dup" });
    const r = await client.request<{ error: string }>("POST", `/control/v1/nodes/${a.node_id}/events`, { body: { event_type: "x", event_id: "dup" } });
    expect(r.status).toBe(409);
    expect(r.body.error).toBe("duplicate_event_id");
  });
});

describe("bad envelopes", () => {
  async function withPrimedStream(): Promise<{ client: MockcpClient; a: Node; s: EventStream; good: Envelope; clock: { now: number } }> {
    const { client, clock } = await setup();
    const a = await register(client, "a");
    const s = await open(client, a);
    await client.pushEvent(a.node_id, { event_type: "peer_removed", payload: { peer_id: "n_good" } });
    const good = (await nextEnvelope(s)).env;
    expect(verifies(good, K1)).toBe(true);
    return { client, a, s, good, clock };
  }

  it("wrong_key and tampered_payload do not verify", async () => {
    const { client, a, s } = await withPrimedStream();
    for (const kind of ["wrong_key", "tampered_payload"] as const) {
      const r = await client.pushBadEvent(a.node_id, { kind });
      expect(r.delivered).toBe(1);
      const got = await nextEnvelope(s);
      expect(got.raw).toBe(r.data);
      expect(Object.keys(got.env).sort()).toEqual(["event_id", "event_type", "issued_at", "nonce", "payload", "signature"]);
      expect(Buffer.from(got.env.signature, "base64")).toHaveLength(64);
      expect(verifies(got.env, K1)).toBe(false);
    }
  });

  it("stale and future verify but are outside ±300 s", async () => {
    const { client, a, s, clock } = await withPrimedStream();
    await client.pushBadEvent(a.node_id, { kind: "stale" });
    const stale = (await nextEnvelope(s)).env;
    expect(verifies(stale, K1)).toBe(true);
    expect(clock.now - Date.parse(stale.issued_at)).toBeGreaterThan(300_000);
    await client.pushBadEvent(a.node_id, { kind: "future", offset_seconds: 301 });
    const future = (await nextEnvelope(s)).env;
    expect(verifies(future, K1)).toBe(true);
    expect(Date.parse(future.issued_at) - clock.now).toBe(301_000);
  });

  it("reused_nonce and duplicate_id verify but repeat the last nonce or id", async () => {
    const { client, a, s, good } = await withPrimedStream();
    await client.pushBadEvent(a.node_id, { kind: "reused_nonce" });
    const reused = (await nextEnvelope(s)).env;
    expect(verifies(reused, K1)).toBe(true);
    expect(reused.nonce).toBe(good.nonce);
    expect(reused.event_id).not.toBe(good.event_id);

    // duplicate_id repeats the last *real* event (one the agent dispatched), not a bad one.
    const r = await client.pushBadEvent(a.node_id, { kind: "duplicate_id" });
    const dup = await nextEnvelope(s);
    expect(verifies(dup.env, K1)).toBe(true);
    expect(dup.id).toBe(good.event_id);
    expect(r.event_id).toBe(good.event_id);
    expect(dup.env.event_id).toBe(good.event_id);
    expect(dup.env.payload).toEqual(good.payload);
    expect(dup.env.nonce).not.toBe(good.nonce);
    expect(dup.env.nonce).not.toBe(reused.nonce);
    // Bad events never enter the replay buffer.
    expect((await client.events(a.node_id)).map((e) => e.event_id)).toEqual([good.event_id]);
  });

  it("needs a previous event for reused_nonce / duplicate_id", async () => {
    const { client } = await setup();
    const a = await register(client, "a");
    const r = await client.request<{ error: string }>("POST", `/control/v1/nodes/${a.node_id}/bad-events`, { body: { kind: "reused_nonce" } });
    expect(r.status).toBe(409);
    expect(r.body.error).toBe("no_previous_event");
  });

  it("malformed_json does not parse, missing_field lacks the field, oversize is big but valid", async () => {
    const { client, a, s } = await withPrimedStream();
    await client.pushBadEvent(a.node_id, { kind: "malformed_json" });
    const m = await s.next();
    expect(() => JSON.parse(m.data) as unknown).toThrow();

    for (const field of ["signature", "nonce", "payload", "event_id"] as const) {
      await client.pushBadEvent(a.node_id, { kind: "missing_field", field });
      const msg = await s.next();
      const env = JSON.parse(msg.data) as Record<string, unknown>;
      expect(field in env).toBe(false);
      expect(Object.keys(env)).toHaveLength(5);
      if (field === "event_id") expect(msg.id).toBeUndefined();
    }

    const r = await client.pushBadEvent(a.node_id, { kind: "oversize", size: 200_000 });
    const big = await s.next(10_000);
    expect(big.data.length).toBeGreaterThanOrEqual(200_000);
    expect(r.data_bytes).toBe(Buffer.byteLength(big.data));
    expect(verifies(JSON.parse(big.data) as Envelope, K1)).toBe(true);
  });

  it("rejects an unknown kind", async () => {
    const { client } = await setup();
    const a = await register(client, "a");
    expect((await client.request("POST", `/control/v1/nodes/${a.node_id}/bad-events`, { body: { kind: "nope" } })).status).toBe(400);
  });
});

describe("heartbeat, deregister, streams control", () => {
  it("stores heartbeats and answers flags: reconcile once, rotate_keys until keys/rotate", async () => {
    const { client } = await setup();
    const a = await register(client, "a");
    const hb = (extra: object = {}): Promise<{ status: number; body: { reconcile?: boolean; rotate_keys?: boolean; error?: string } }> =>
      client.request("POST", `/v1/nodes/${a.node_id}/heartbeat`, {
        token: a.identity_token,
        body: { node_id: a.node_id, timestamp: "2025-01-15T10:30:00.000Z", status: "healthy", uptime: "1s", ...extra },
      });
    expect((await hb()).body).toEqual({ reconcile: false, rotate_keys: false });
    await client.setFlags(a.node_id, { reconcile: true, rotate_keys: true });
    expect((await hb()).body).toEqual({ reconcile: true, rotate_keys: true });
    expect((await hb()).body).toEqual({ reconcile: false, rotate_keys: true });
    const rot = await client.request("POST", "/v1/keys/rotate", { token: a.identity_token, body: { node_id: a.node_id, new_public_key: randomBytes(32).toString("base64") } });
    expect(rot.status).toBe(200);
    expect((await hb()).body).toEqual({ reconcile: false, rotate_keys: false });

    const bad = await hb({ node_id: "n_other" });
    expect(bad.status).toBe(400);
    expect((await hb({ status: "sleepy" })).status).toBe(400);
    const stored = await client.heartbeats(a.node_id);
    expect(stored).toHaveLength(4);
    expect(stored[0]?.body).toMatchObject({ node_id: a.node_id, uptime: "1s" });
    expect((await client.getNode(a.node_id)).status).toBe("healthy");
  });

  it("deregister revokes the token, drops the stream and tells peers", async () => {
    const { client } = await setup();
    const a = await register(client, "a");
    const b = await register(client, "b");
    const sa = await open(client, a);
    const sb = await open(client, b);
    const r = await client.request("POST", `/v1/nodes/${a.node_id}/deregister`, { token: a.identity_token });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({});
    const got = await nextEnvelope(sb);
    expect(got.env.event_type).toBe("peer_removed");
    expect(got.env.payload).toEqual({ peer_id: a.node_id });
    await client.waitFor(async () => sa.ended, { what: "a's stream ended" });
    expect((await client.request("GET", `/v1/nodes/${a.node_id}/state`, { token: a.identity_token })).status).toBe(401);
    expect((await client.getNode(a.node_id)).status).toBe("deregistered");
    const state = await client.request<{ peers: unknown[] }>("GET", `/v1/nodes/${b.node_id}/state`, { token: b.identity_token });
    expect(state.body.peers).toEqual([]);
    // The hostname is free again.
    await register(client, "a");
  });

  it("drops a node's streams on request", async () => {
    const { client } = await setup();
    const a = await register(client, "a");
    const s = await open(client, a);
    expect(await client.dropStreams(a.node_id)).toBe(1);
    await client.waitFor(async () => s.ended, { what: "stream ended" });
    const s2 = await open(client, a);
    expect(await client.dropStreams(a.node_id, "destroy")).toBe(1);
    await client.waitFor(async () => s2.ended, { what: "stream reset" });
    expect((await client.getNode(a.node_id)).streams).toBe(0);
  });

  it("offline answers 503 on the CP API and ends streams; online restores", async () => {
    const { client } = await setup();
    const a = await register(client, "a");
    const s = await open(client, a);
    await client.setOffline();
    await client.waitFor(async () => s.ended, { what: "stream ended" });
    const ping = await client.request<{ error: string }>("GET", "/v1/ping");
    expect(ping.status).toBe(503);
    expect(ping.body.error).toBe("unavailable");
    expect(ping.headers["retry-after"]).toBe("1");
    expect((await client.openEvents(a.node_id, a.identity_token)).status).toBe(503);
    expect((await client.status()).offline).toBe(true);
    // Events pushed while offline wait in the replay buffer.
    await client.pushEvent(a.node_id, { event_type: "peer_removed", payload: {}, event_id: "while-off" });
    await client.setOnline();
    await client.ping();
    expect((await client.events(a.node_id)).map((e) => e.event_id)).toContain("while-off");
  });
});

describe("signing-key rotation", () => {
  it("announces K2 signed by K1, then signs with K2; previous expires after the transition", async () => {
    const { client, clock } = await setup();
    const a = await register(client, "a");
    const s = await open(client, a);
    const T = clock.now;
    const r = await client.rotateSigningKey({ transition_period: "1h", seed: seed2 });
    expect(r.new_signing_public_key).toBe(K2);
    expect(r.events).toHaveLength(1);
    const ann = (await nextEnvelope(s)).env;
    expect(ann.event_type).toBe("signing_key_rotated");
    expect(ann.payload).toEqual({ new_signing_public_key: K2, valid_from: new Date(T).toISOString(), transition_period: "1h" });
    expect(verifies(ann, K1)).toBe(true);

    await client.pushEvent(a.node_id, { event_type: "peer_removed", payload: { peer_id: "n_x" } });
    const after = (await nextEnvelope(s)).env;
    expect(verifies(after, K2)).toBe(true);
    expect(verifies(after, K1)).toBe(false);

    const st = await client.request<{ signing_keys: unknown }>("GET", `/v1/nodes/${a.node_id}/state`, { token: a.identity_token });
    expect(st.body.signing_keys).toEqual({ current: K2, previous: K1, transition_expires: new Date(T + 3_600_000).toISOString() });
    clock.now = T + 3_600_000;
    const st2 = await client.request<{ signing_keys: unknown }>("GET", `/v1/nodes/${a.node_id}/state`, { token: a.identity_token });
    expect(st2.body.signing_keys).toEqual({ current: K2, previous: null, transition_expires: null });

  });

  it("keeps signing with K1 until a future valid_from, and a new node learns the active key", async () => {
    const { client, clock } = await setup();
    const a = await register(client, "a");
    const s = await open(client, a);
    const T = clock.now + 600_000;
    await client.rotateSigningKey({ transition_period: "24h", seed: seed2, valid_from: new Date(T).toISOString() });
    expect(verifies((await nextEnvelope(s)).env, K1)).toBe(true);
    await client.pushEvent(a.node_id, { event_type: "peer_removed", payload: {} });
    expect(verifies((await nextEnvelope(s)).env, K1)).toBe(true);
    expect((await register(client, "b")).signing_public_key).toBe(K1);
    const added = (await nextEnvelope(s)).env;
    expect(added.event_type).toBe("peer_added");
    expect(verifies(added, K1)).toBe(true);
    expect(await client.signingKeys()).toEqual({ current: K2, previous: K1, transition_expires: new Date(T + 86_400_000).toISOString(), active: K1 });
    clock.now = T;
    await client.pushEvent(a.node_id, { event_type: "peer_removed", payload: {} });
    expect(verifies((await nextEnvelope(s)).env, K2)).toBe(true);
  });

  it("replays the announcement signed by K1 even after valid_from", async () => {
    const { client, clock } = await setup();
    const a = await register(client, "a");
    await client.pushEvent(a.node_id, { event_type: "peer_removed", payload: {}, event_id: "before" });
    await client.rotateSigningKey({ transition_period: "1h", seed: seed2 });
    clock.now += 1000;
    const s = await open(client, a, "before");
    const ann = (await nextEnvelope(s)).env;
    expect(ann.event_type).toBe("signing_key_rotated");
    expect(verifies(ann, K1)).toBe(true);
  });

  it("refuses a transition shorter than 300 s unless forced", async () => {
    const { client } = await setup();
    expect((await client.request("POST", "/control/v1/signing-key/rotate", { body: { transition_period: "299s" } })).status).toBe(400);
    expect((await client.request("POST", "/control/v1/signing-key/rotate", { body: { transition_period: "soon" } })).status).toBe(400);
    expect((await client.request("POST", "/control/v1/signing-key/rotate", { body: { transition_period: "10s", force: true } })).status).toBe(200);
  });
});
