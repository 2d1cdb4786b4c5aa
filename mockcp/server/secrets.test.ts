import { createDecipheriv } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import type { SecretResponse } from "../control/client.js";
import { cleanup, nextEvent, openStream, randomKey, registerNode, startCp } from "../../test/support/mockcp-testkit.js";

afterEach(cleanup);

function decrypt(nsk: string, r: SecretResponse): string {
  const body = Buffer.from(r.ciphertext, "base64");
  const nonce = Buffer.from(r.nonce, "base64");
  expect(nonce).toHaveLength(12);
  const d = createDecipheriv("aes-256-gcm", Buffer.from(nsk, "base64"), nonce);
  d.setAuthTag(body.subarray(body.length - 16));
  return Buffer.concat([d.update(body.subarray(0, body.length - 16)), d.final()]).toString("utf8");
}

describe("GET /v1/nodes/{id}/secrets/{key} (TV-11)", () => {
  it("serves a secret encrypted with the node's current NSK, 403 when denied, 404 when missing, 400 for a bad key", async () => {
    const { client } = await startCp();
    const a = await registerNode(client, "a");
    const b = await registerNode(client, "b");
    await client.setSecret(a.node_id, "tls-cert", { value: "pem-data ✓" });
    await client.denySecret(a.node_id, "root-pw");
    const get = (key: string, token = a.identity_token, node = a.node_id): Promise<{ status: number; body: SecretResponse & { error?: string } }> =>
      client.request("GET", `/v1/nodes/${encodeURIComponent(node)}/secrets/${encodeURIComponent(key)}`, { token });

    const ok = await get("tls-cert");
    expect(ok.status).toBe(200);
    expect(Object.keys(ok.body).sort()).toEqual(["ciphertext", "key", "nonce", "version"]);
    expect(ok.body).toMatchObject({ key: "tls-cert", version: 1 });
    const nsk = (await client.getNode(a.node_id)).node_secret_key;
    expect(decrypt(nsk, ok.body)).toBe("pem-data ✓");
    // A fresh nonce per response.
    expect((await get("tls-cert")).body.nonce).not.toBe(ok.body.nonce);

    expect((await get("root-pw")).status).toBe(403);
    expect((await get("root-pw")).body.error).toBe("forbidden");
    expect((await get("nope")).status).toBe(404);
    expect((await get(".hidden")).status).toBe(400);
    expect((await get("a b")).status).toBe(400);
    expect((await get("x".repeat(129))).status).toBe(400);
    // Secrets are per node; check order: unknown node 404, wrong token 401.
    expect((await get("tls-cert", b.identity_token, b.node_id)).status).toBe(404);
    expect((await get("tls-cert", b.identity_token)).status).toBe(401);
    expect((await get("tls-cert", a.identity_token, "n_unknown")).status).toBe(404);
  });

  it("encrypts with the new NSK after keys/rotate", async () => {
    const { client } = await startCp();
    const a = await registerNode(client, "a");
    await client.setSecret(a.node_id, "db", { value: "hunter2" });
    const rot = await client.request<{ node_secret_key: string }>("POST", "/v1/keys/rotate", { token: a.identity_token, body: { node_id: a.node_id, new_public_key: randomKey() } });
    expect(rot.status).toBe(200);
    const r = await client.request<SecretResponse>("GET", `/v1/nodes/${a.node_id}/secrets/db`, { token: a.identity_token });
    expect(decrypt(rot.body.node_secret_key, r.body)).toBe("hunter2");
    expect(() => decrypt(a.node_secret_key, r.body)).toThrow();
  });
});

describe("secret index", () => {
  it("pushes node_secrets_updated with names and versions only and lists them in state", async () => {
    const { client } = await startCp();
    const a = await registerNode(client, "a");
    const s = await openStream(client, a);
    const set = await client.setSecret(a.node_id, "db", { value: "v1" });
    expect(set.secret_refs).toEqual([{ key: "db", version: 1 }]);
    expect(await nextEvent(s)).toMatchObject({ type: "node_secrets_updated", id: set.event_id, payload: { secret_refs: [{ key: "db", version: 1 }] } });
    await client.setSecret(a.node_id, "db", { value: "v2" });
    const ev = await nextEvent(s);
    expect(ev.payload).toEqual({ secret_refs: [{ key: "db", version: 2 }] });
    expect(JSON.stringify(ev.payload)).not.toContain("v2\"");

    // push: false changes the index silently; the state document still shows it.
    const quiet = await client.setSecret(a.node_id, "api", { value: "k", version: 5, push: false });
    expect(quiet.event_id).toBeNull();
    await expect(s.next(300)).rejects.toThrow(/no event/);
    const st = await client.request<{ secret_refs: unknown[] }>("GET", `/v1/nodes/${a.node_id}/state`, { token: a.identity_token });
    expect(st.body.secret_refs).toEqual([
      { key: "api", version: 5 },
      { key: "db", version: 2 },
    ]);

    const del = await client.deleteSecret(a.node_id, "api");
    expect(del.deleted).toBe(true);
    expect((await nextEvent(s)).payload).toEqual({ secret_refs: [{ key: "db", version: 2 }] });
    expect((await client.secrets(a.node_id)).secrets.map((x) => x.key)).toEqual(["db"]);
    expect((await client.request("PUT", `/control/v1/nodes/${a.node_id}/secrets/bad%20key`, { body: { value: "x" } })).status).toBe(400);
  });
});
