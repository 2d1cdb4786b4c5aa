import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { cleanup, nextEvent, openStream as open, randomKey as key, registerNode as register, startCp, type TestNode as Node } from "../../test/support/mockcp-testkit.js";
import type { EventStream, MockcpClient } from "../control/client.js";
import type { Peer } from "./store.js";

afterEach(cleanup);

const setup = async (): Promise<MockcpClient> => (await startCp()).client;

async function nextPayload(s: EventStream): Promise<{ type: string; payload: Record<string, unknown> }> {
  const { type, payload } = await nextEvent(s);
  return { type, payload };
}

interface StateBody {
  peers: Peer[];
  policies: unknown[];
  signing_keys: { current: string; previous: string | null; transition_expires: string | null };
  metadata: Record<string, string>;
  data: unknown[];
  secret_refs: unknown[];
}

const getState = async (client: MockcpClient, n: Node): Promise<StateBody> => {
  const r = await client.request<StateBody>("GET", `/v1/nodes/${n.node_id}/state`, { token: n.identity_token });
  expect(r.status).toBe(200);
  return r.body;
};

describe("peers and PSKs", () => {
  it("gives both members of a pair the same PSK and tells existing nodes with peer_added", async () => {
    const client = await setup();
    const a = await register(client, "a");
    const sa = await open(client, a);
    const b = await register(client, "b");
    const added = await nextPayload(sa);
    expect(added.type).toBe("peer_added");
    expect(added.payload).toEqual({ id: b.node_id, public_key: b.public_key, mesh_ip: b.mesh_ip, endpoint: "", allowed_ips: [`${b.mesh_ip}/32`], psk: b.peers[0]?.psk, hostname: "b" });
    const stA = await getState(client, a);
    expect(stA.peers).toEqual([added.payload]);
    expect(b.peers[0]?.id).toBe(a.node_id);

    const c = await register(client, "c");
    const psks = new Set(c.peers.map((p) => p.psk));
    expect(psks.size).toBe(2);
    expect(psks.has(b.peers[0]?.psk ?? "")).toBe(false);
    const stB = await getState(client, b);
    expect(stB.peers.find((p) => p.id === c.node_id)?.psk).toBe(c.peers.find((p) => p.id === b.node_id)?.psk);
  });

  it("serves the state shape with every list as an array", async () => {
    const client = await setup();
    const a = await register(client, "a");
    const st = await getState(client, a);
    expect(st).toEqual({
      peers: [],
      policies: [],
      signing_keys: { current: expect.any(String) as string, previous: null, transition_expires: null },
      metadata: {},
      data: [],
      secret_refs: [],
    });
  });
});

describe("POST /v1/keys/rotate (TV-11, TV-12)", () => {
  it("rotates PSKs and the NSK, tells peers, and is idempotent for the same key", async () => {
    const client = await setup();
    const a = await register(client, "a");
    const b = await register(client, "b");
    const c = await register(client, "c");
    const sb = await open(client, b);
    const oldPsk = b.peers.find((p) => p.id === a.node_id)?.psk;
    const newKey = key();
    const r = await client.request<{ updated_peers: Peer[]; node_secret_key: string }>("POST", "/v1/keys/rotate", {
      token: a.identity_token,
      body: { node_id: a.node_id, new_public_key: newKey },
    });
    expect(r.status).toBe(200);
    expect(r.body.updated_peers.map((p) => p.id).sort()).toEqual([b.node_id, c.node_id].sort());
    const pskAB = r.body.updated_peers.find((p) => p.id === b.node_id)?.psk;
    expect(pskAB).not.toBe(oldPsk);
    expect(Buffer.from(r.body.node_secret_key, "base64")).toHaveLength(32);
    expect(r.body.node_secret_key).not.toBe(a.node_secret_key);

    const ev = await nextPayload(sb);
    expect(ev.type).toBe("peer_key_rotated");
    expect(ev.payload).toMatchObject({ id: a.node_id, public_key: newKey, psk: pskAB, mesh_ip: a.mesh_ip });
    expect((await getState(client, b)).peers.find((p) => p.id === a.node_id)).toMatchObject({ public_key: newKey, psk: pskAB });
    expect((await client.getNode(a.node_id)).public_key).toBe(newKey);

    const again = await client.request("POST", "/v1/keys/rotate", { token: a.identity_token, body: { node_id: a.node_id, new_public_key: newKey } });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(r.body);
    // No second peer_key_rotated for the resend.
    await expect(sb.next(300)).rejects.toThrow(/no event/);
  });

  it("answers 403 for a foreign node_id, 400 for a bad key, 401 without a valid token", async () => {
    const client = await setup();
    const a = await register(client, "a");
    const b = await register(client, "b");
    const foreign = await client.request<{ error: string }>("POST", "/v1/keys/rotate", { token: a.identity_token, body: { node_id: b.node_id, new_public_key: key() } });
    expect(foreign.status).toBe(403);
    expect(foreign.body.error).toBe("forbidden");
    const badKey = await client.request("POST", "/v1/keys/rotate", { token: a.identity_token, body: { node_id: a.node_id, new_public_key: randomBytes(31).toString("base64") } });
    expect(badKey.status).toBe(400);
    expect((await client.request("POST", "/v1/keys/rotate", { token: "nope", body: { node_id: a.node_id, new_public_key: key() } })).status).toBe(401);
    // Nothing changed for b.
    expect((await client.getNode(b.node_id)).public_key).toBe(b.public_key);
  });
});

describe("endpoint, capabilities, drift", () => {
  it("stores endpoints, shows them in peers and tells peers when they change", async () => {
    const client = await setup();
    const a = await register(client, "a");
    const b = await register(client, "b");
    const sb = await open(client, b);
    const put = (n: Node, body: unknown): Promise<{ status: number; body: { peer_endpoints?: unknown[] } }> =>
      client.request("PUT", `/v1/nodes/${n.node_id}/endpoint`, { token: n.identity_token, body });
    const r1 = await put(a, { public_endpoint: "203.0.113.10:51820", nat_type: "full_cone" });
    expect(r1.status).toBe(200);
    expect(r1.body).toEqual({ peer_endpoints: [] });
    expect(await nextPayload(sb)).toEqual({ type: "peer_endpoint_changed", payload: { peer_id: a.node_id, endpoint: "203.0.113.10:51820" } });
    expect((await getState(client, b)).peers[0]?.endpoint).toBe("203.0.113.10:51820");
    expect((await client.getNode(a.node_id)).endpoint).toMatchObject({ public_endpoint: "203.0.113.10:51820", nat_type: "full_cone" });

    // Same endpoint again: no new event.
    await put(a, { public_endpoint: "203.0.113.10:51820", nat_type: "full_cone" });
    await expect(sb.next(300)).rejects.toThrow(/no event/);

    const r2 = await put(b, { public_endpoint: "[2001:db8::1]:51820", nat_type: "none" });
    expect(r2.body).toEqual({ peer_endpoints: [{ peer_id: a.node_id, endpoint: "203.0.113.10:51820" }] });

    expect((await put(a, { public_endpoint: "no-port", nat_type: "full_cone" })).status).toBe(400);
    expect((await put(a, { public_endpoint: "1.2.3.4:70000", nat_type: "full_cone" })).status).toBe(400);
    expect((await put(a, { public_endpoint: "1.2.3.4:5", nat_type: "weird" })).status).toBe(400);
  });

  it("records capabilities and drift for the control API", async () => {
    const client = await setup();
    const a = await register(client, "a");
    const caps = { binary: { version: "1.0.0", checksum: `sha256:${"a".repeat(64)}` }, builtin_actions: [{ name: "diagnostics.collect" }], hooks: [] };
    const r = await client.request("PUT", `/v1/nodes/${a.node_id}/capabilities`, { token: a.identity_token, body: caps, gzip: true });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({});
    expect((await client.capabilities(a.node_id)).capabilities).toEqual(caps);
    expect((await client.request("PUT", `/v1/nodes/${a.node_id}/capabilities`, { token: a.identity_token, body: { hooks: [] } })).status).toBe(400);

    const drift = { timestamp: "2025-01-15T10:31:00.000Z", corrections: [{ type: "peer_added", detail: "peer n_x" }] };
    expect((await client.request("POST", `/v1/nodes/${a.node_id}/drift`, { token: a.identity_token, body: drift })).status).toBe(200);
    expect((await client.request("POST", `/v1/nodes/${a.node_id}/drift`, { token: a.identity_token, body: { corrections: [] } })).status).toBe(400);
    const got = await client.drift(a.node_id);
    expect(got).toHaveLength(1);
    expect(got[0]?.body).toEqual(drift);
    expect((await client.requests({ path: `/v1/nodes/${a.node_id}/drift` })).map((x) => x.status)).toEqual([200, 400]);
  });
});

describe("desired state set through the control API", () => {
  it("puts policies, metadata and data into state and pushes the matching events", async () => {
    const client = await setup();
    const a = await register(client, "a");
    const s = await open(client, a);
    const policies = [{ id: "p1", rules: [{ src: "*", dst: "*", port: 22, protocol: "tcp", action: "allow" }] }];
    await client.setPolicies(a.node_id, policies);
    expect(await nextPayload(s)).toEqual({ type: "policy_updated", payload: { policies } });
    await client.setNodeState(a.node_id, { metadata: { environment: "test" }, data: [{ key: "cfg", payload: { x: 1 } }] });
    const ev = await nextPayload(s);
    expect(ev.type).toBe("node_state_updated");
    expect(ev.payload).toMatchObject({ metadata: { environment: "test" }, data: [{ key: "cfg", version: 1, content_type: "application/json", payload: { x: 1 } }] });
    await client.setNodeState(a.node_id, { data: [{ key: "cfg", payload: { x: 2 } }], push: false });
    const st = await getState(client, a);
    expect(st.policies).toEqual(policies);
    expect(st.metadata).toEqual({ environment: "test" });
    expect(st.data).toMatchObject([{ key: "cfg", version: 2, payload: { x: 2 } }]);
    await expect(s.next(300)).rejects.toThrow(/no event/);
    expect((await client.request("PUT", `/control/v1/nodes/${a.node_id}/node-state`, { body: { data: [{ key: "../x", payload: 1 }] } })).status).toBe(400);
  });
});
