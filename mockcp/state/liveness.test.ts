import { afterEach, describe, expect, it } from "vitest";
import type { MockcpClient } from "../control/client.js";
import { cleanup, heartbeatBody, nextEvent, openStream, registerNode, startCp, type TestNode } from "../../test/support/mockcp-testkit.js";
import type { Peer } from "./store.js";

afterEach(cleanup);

const beat = async (client: MockcpClient, n: TestNode): Promise<void> => {
  const r = await client.request("POST", `/v1/nodes/${n.node_id}/heartbeat`, { token: n.identity_token, body: heartbeatBody(n) });
  expect(r.status).toBe(200);
};

const peerIds = async (client: MockcpClient, n: TestNode): Promise<string[]> => {
  const r = await client.request<{ peers: Peer[] }>("GET", `/v1/nodes/${n.node_id}/state`, { token: n.identity_token });
  return r.body.peers.map((p) => p.id).sort();
};

describe("heartbeat liveness (CP side)", () => {
  it("marks a silent node unreachable after 3 intervals, offline after 10, and re-adds it when heartbeats resume", async () => {
    let now = Date.parse("2025-01-15T10:00:00Z");
    const { client } = await startCp({ now: () => now, heartbeatIntervalMs: 1000 });
    const a = await registerNode(client, "a");
    const b = await registerNode(client, "b");
    const c = await registerNode(client, "c");
    const sb = await openStream(client, b);
    await beat(client, a);
    const status = async (): Promise<string> => (await client.getNode(a.node_id)).status;
    expect(await status()).toBe("healthy");

    now += 2_900;
    expect(await status()).toBe("healthy");
    now += 200;
    expect(await status()).toBe("unreachable");
    // Unreachable does not change the mesh yet.
    await expect(sb.next(200)).rejects.toThrow(/no event/);
    expect(await peerIds(client, b)).toContain(a.node_id);

    now += 6_900;
    expect(await status()).toBe("offline");
    expect(await nextEvent(sb)).toMatchObject({ type: "peer_removed", payload: { peer_id: a.node_id } });
    expect(await peerIds(client, b)).toEqual([c.node_id]);
    expect(await peerIds(client, c)).toEqual([b.node_id]);
    // The offline node's own desired state still lists its peers.
    expect(await peerIds(client, a)).toEqual([b.node_id, c.node_id].sort());
    // Nodes that never sent a heartbeat (b, c) are left alone.
    expect((await client.getNode(b.node_id)).status).toBe("registered");
    expect((await client.getNode(a.node_id)).offline_since).toBe(new Date(now).toISOString());

    now += 60_000;
    await client.status();
    await expect(sb.next(200)).rejects.toThrow(/no event/);

    await beat(client, a);
    const added = await nextEvent(sb);
    expect(added.type).toBe("peer_added");
    expect(added.payload).toEqual((await client.peers(b.node_id)).find((p) => p.id === a.node_id));
    expect(added.payload["psk"]).toBe(b.peers.find((p) => p.id === a.node_id)?.psk);
    expect(await status()).toBe("healthy");
    expect(await peerIds(client, b)).toEqual([a.node_id, c.node_id].sort());
  });

  it("notices a silent node on its own timer, without any request", async () => {
    const { client } = await startCp({ heartbeatIntervalMs: 20 });
    const a = await registerNode(client, "a");
    const b = await registerNode(client, "b");
    const sb = await openStream(client, b);
    await beat(client, a);
    // No requests from here on: only the liveness timer can produce this event.
    expect(await nextEvent(sb, 3000)).toMatchObject({ type: "peer_removed", payload: { peer_id: a.node_id } });
  });
});
