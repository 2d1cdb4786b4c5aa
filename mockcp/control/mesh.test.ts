import { afterEach, describe, expect, it } from "vitest";
import type { MockcpClient, StateDocument } from "./client.js";
import { cleanup, nextEvent, openStream, randomKey, registerNode, startCp, type TestNode } from "../../test/support/mockcp-testkit.js";

afterEach(cleanup);

const pull = async (client: MockcpClient, n: TestNode): Promise<StateDocument> => {
  const r = await client.request<StateDocument>("GET", `/v1/nodes/${n.node_id}/state`, { token: n.identity_token });
  expect(r.status).toBe(200);
  return r.body;
};

describe("policies", () => {
  it("pushes the complete set on every change and serves it in state and the control API", async () => {
    const { client } = await startCp();
    const a = await registerNode(client, "a");
    const s = await openStream(client, a);
    const p1 = { id: "p1", rules: [{ src: "*", dst: "*", port: 22, protocol: "tcp", action: "allow" }] };
    const p2 = { id: "p2", rules: [{ src: "10.100.0.0/16", dst: a.node_id, port: 0, protocol: "", action: "deny" }] };
    await client.setPolicies(a.node_id, [p1]);
    expect(await nextEvent(s)).toMatchObject({ type: "policy_updated", payload: { policies: [p1] } });
    await client.setPolicies(a.node_id, [p1, p2]);
    expect((await nextEvent(s)).payload).toEqual({ policies: [p1, p2] });
    expect(await client.policies(a.node_id)).toEqual([p1, p2]);
    expect((await pull(client, a)).policies).toEqual([p1, p2]);
    await client.setPolicies(a.node_id, [], { push: false });
    await expect(s.next(300)).rejects.toThrow(/no event/);
    expect((await pull(client, a)).policies).toEqual([]);
  });
});

describe("drift injection (state overrides)", () => {
  it("changes, hides and adds peers in one node's state document without pushing events", async () => {
    const { client } = await startCp();
    const a = await registerNode(client, "a");
    const b = await registerNode(client, "b");
    const c = await registerNode(client, "c");
    const sa = await openStream(client, a);
    const before = await pull(client, a);

    const r = await client.injectPeerDrift(a.node_id, b.node_id, { endpoint: "198.51.100.9:51820", allowed_ips: [`${b.mesh_ip}/32`, "192.168.50.0/24"] });
    expect(r.peers.find((p) => p.id === b.node_id)).toMatchObject({ endpoint: "198.51.100.9:51820", allowed_ips: [`${b.mesh_ip}/32`, "192.168.50.0/24"] });
    await client.injectPeerDrift(a.node_id, c.node_id, { remove: true });
    const phantomKey = randomKey();
    await client.injectPeerDrift(a.node_id, "n_phantom", { public_key: phantomKey, mesh_ip: "10.100.9.9" });
    await expect(sa.next(300)).rejects.toThrow(/no event/);

    const st = await pull(client, a);
    expect(st.peers.map((p) => p.id).sort()).toEqual([b.node_id, "n_phantom"].sort());
    const bPeer = st.peers.find((p) => p.id === b.node_id);
    expect(bPeer).toEqual({ ...before.peers.find((p) => p.id === b.node_id), endpoint: "198.51.100.9:51820", allowed_ips: [`${b.mesh_ip}/32`, "192.168.50.0/24"] });
    const phantom = st.peers.find((p) => p.id === "n_phantom");
    expect(phantom).toMatchObject({ public_key: phantomKey, mesh_ip: "10.100.9.9", endpoint: "", allowed_ips: ["10.100.9.9/32"] });
    // Stable between pulls, so only the injected change looks like drift.
    expect((await pull(client, a)).peers).toEqual(st.peers);
    expect(await client.desiredState(a.node_id)).toEqual(st);
    // Other nodes' views are untouched.
    expect((await pull(client, b)).peers.find((p) => p.id === c.node_id)?.endpoint).toBe("");
    expect(Object.keys(await client.stateOverrides(a.node_id)).sort()).toEqual([b.node_id, c.node_id, "n_phantom"].sort());

    expect((await client.request("PUT", `/control/v1/nodes/${a.node_id}/state-overrides/peers/n_ghost`, { body: { endpoint: "1.2.3.4:5" } })).status).toBe(400);

    await client.clearStateOverrides(a.node_id, b.node_id);
    expect((await pull(client, a)).peers.find((p) => p.id === b.node_id)).toEqual(before.peers.find((p) => p.id === b.node_id));
    await client.clearStateOverrides(a.node_id);
    expect((await pull(client, a)).peers).toEqual(before.peers);
  });
});
