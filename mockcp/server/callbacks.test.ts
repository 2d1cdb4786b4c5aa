import { afterEach, describe, expect, it } from "vitest";
import { cleanup, registerNode, startCp } from "../../test/support/mockcp-testkit.js";

afterEach(cleanup);

const sha = (c: string): string => `sha256:${c.repeat(64)}`;

describe("tunnel callbacks and integrity violations", () => {
  it("records ready and closed per session and rejects malformed bodies", async () => {
    const { client } = await startCp();
    const a = await registerNode(client, "a");
    const post = (path: string, body: unknown): Promise<{ status: number; body: unknown }> =>
      client.request("POST", `/v1/nodes/${a.node_id}/${path}`, { token: a.identity_token, body });
    const ready = { listen_addr: `${a.mesh_ip}:40123`, timestamp: "2025-01-15T10:30:00.000Z" };
    const closed = { reason: "expired", duration: "12m3s", timestamp: "2025-01-15T10:42:03.000Z" };
    const r = await post("tunnels/sess_a1/ready", ready);
    expect([r.status, r.body]).toEqual([200, {}]);
    expect((await post("tunnels/sess_a1/closed", closed)).status).toBe(200);
    expect((await post("tunnels/sess_a1/closed", { ...closed, reason: "bored" })).status).toBe(400);
    expect((await post("tunnels/sess_a1/ready", { listen_addr: "nope", timestamp: ready.timestamp })).status).toBe(400);
    expect((await post("tunnels/sess_a1/opened", ready)).status).toBe(404);
    const tunnels = await client.tunnels(a.node_id);
    expect(tunnels).toHaveLength(1);
    expect(tunnels[0]?.session_id).toBe("sess_a1");
    expect(tunnels[0]?.ready.map((x) => x.body)).toEqual([ready]);
    expect(tunnels[0]?.closed.map((x) => x.body)).toEqual([closed]);
  });

  it("records integrity violations with prefixed checksums", async () => {
    const { client } = await startCp();
    const a = await registerNode(client, "a");
    const v = { type: "hook", path: "/etc/plexd/hooks.d/backup.sh", expected_checksum: sha("a"), actual_checksum: sha("b"), detail: "checksum mismatch before execution", timestamp: "2025-01-15T10:30:00Z" };
    const post = (body: unknown): Promise<{ status: number }> => client.request("POST", `/v1/nodes/${a.node_id}/integrity/violations`, { token: a.identity_token, body });
    expect((await post(v)).status).toBe(200);
    expect((await post({ ...v, actual_checksum: "b".repeat(64) })).status).toBe(400);
    expect((await post({ ...v, type: "config" })).status).toBe(400);
    expect((await client.integrityViolations(a.node_id)).map((x) => x.body)).toEqual([v]);
    expect((await client.request("POST", `/v1/nodes/${a.node_id}/integrity/violations`, { token: "x", body: v })).status).toBe(401);
  });
});
