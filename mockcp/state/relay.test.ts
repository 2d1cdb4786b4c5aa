import { afterEach, describe, expect, it } from "vitest";
import { cleanup, registerNode as register, startCp, type TestNode as Node } from "../../test/support/mockcp-testkit.js";
import type { MockcpClient } from "../control/client.js";

afterEach(cleanup);

const putEndpoint = async (c: MockcpClient, n: Node, ep: string, nat: string) => {
  const r = await c.request<{ peer_endpoints: { peer_id: string; endpoint: string }[] }>("PUT", `/v1/nodes/${n.node_id}/endpoint`, { token: n.identity_token, body: { public_endpoint: ep, nat_type: nat } });
  expect(r.status).toBe(200);
  return r.body.peer_endpoints;
};
const state = async (c: MockcpClient, n: Node) =>
  (await c.request<{ peers: { id: string; endpoint: string }[]; relay_config?: { sessions: Record<string, unknown>[] } }>("GET", `/v1/nodes/${n.node_id}/state`, { token: n.identity_token })).body;

describe("relay sessions", () => {
  it("pairs two symmetric nodes through the named bridge, and revocation gives them their own endpoints back", async () => {
    const c = (await startCp()).client;
    const bridge = await register(c, "bridge");
    const a = await register(c, "a");
    const b = await register(c, "b");
    await c.setRelayBridge(bridge.node_id, "192.0.2.9:51821");
    await putEndpoint(c, a, "192.0.2.2:40001", "symmetric");
    expect((await c.relay()).sessions).toEqual([]);
    const answer = await putEndpoint(c, b, "192.0.2.3:40002", "symmetric");
    expect(answer).toContainEqual({ peer_id: a.node_id, endpoint: "192.0.2.9:51821" });
    const [s] = (await c.relay()).sessions;
    expect(s).toMatchObject({ peer_a_id: a.node_id, peer_b_id: b.node_id, peer_a_endpoint: "192.0.2.2:40001", peer_b_endpoint: "192.0.2.3:40002", bridge_id: bridge.node_id, reason: "symmetric" });
    const bridgeEvents = await c.events(bridge.node_id);
    expect(bridgeEvents.find((e) => e.event_type === "relay_session_assigned")?.payload).toEqual({
      session_id: s!.session_id,
      peer_a_id: a.node_id,
      peer_b_id: b.node_id,
      peer_a_endpoint: "192.0.2.2:40001",
      peer_b_endpoint: "192.0.2.3:40002",
      expires_at: s!.expires_at,
    });
    expect((await c.events(a.node_id)).filter((e) => e.event_type === "peer_endpoint_changed").at(-1)?.payload).toEqual({ peer_id: b.node_id, endpoint: "192.0.2.9:51821" });
    expect((await state(c, a)).peers.find((p) => p.id === b.node_id)?.endpoint).toBe("192.0.2.9:51821");
    expect((await state(c, bridge)).relay_config?.sessions).toHaveLength(1);
    expect((await state(c, a)).relay_config).toBeUndefined();
    // A symmetric NAT's next STUN mapping does not move the relayed peer off the relay.
    await putEndpoint(c, a, "192.0.2.2:40099", "symmetric");
    expect((await state(c, b)).peers.find((p) => p.id === a.node_id)?.endpoint).toBe("192.0.2.9:51821");

    await c.revokeRelay(s!.session_id);
    expect((await c.events(bridge.node_id)).at(-1)).toMatchObject({ event_type: "relay_session_revoked", payload: { session_id: s!.session_id } });
    expect((await c.events(b.node_id)).at(-1)).toMatchObject({ event_type: "peer_endpoint_changed", payload: { peer_id: a.node_id, endpoint: "192.0.2.2:40099" } });
    expect((await state(c, bridge)).relay_config?.sessions).toEqual([]);
    // Revoked by hand: the next NAT report does not pair them again on its own.
    await putEndpoint(c, b, "192.0.2.3:40003", "symmetric");
    expect((await c.relay()).sessions).toEqual([]);
  });

  it("assigns by hand through the control API and refuses without a bridge", async () => {
    const c = (await startCp()).client;
    const a = await register(c, "a");
    const b = await register(c, "b");
    await putEndpoint(c, a, "192.0.2.2:1", "full_cone");
    await putEndpoint(c, b, "192.0.2.3:1", "full_cone");
    await expect(c.assignRelay({ peer_a: a.node_id, peer_b: b.node_id })).rejects.toThrow(/no_relay_bridge|no active bridge/);
    const bridge = await register(c, "bridge");
    await c.setRelayBridge(bridge.node_id, "192.0.2.9:51821");
    expect((await c.relay()).sessions).toEqual([]);
    const s = await c.assignRelay({ peer_a: a.node_id, peer_b: b.node_id, relay_port: 51900, session_id: "rs_manual" });
    expect(s).toMatchObject({ session_id: "rs_manual", relay_port: 51900, relay_address: "192.0.2.9:51900", reason: "manual" });
  });
});
