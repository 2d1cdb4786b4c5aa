import { afterEach, describe, expect, it } from "vitest";
import type { MockcpClient } from "../control/client.js";
import { cleanup, registerNode, startCp, type TestNode } from "../../test/support/mockcp-testkit.js";

afterEach(cleanup);

interface Answer {
  status: number;
  body: { error?: string; message?: string; conflicts?: { key: string; current_version: number }[] };
}

const entry = (key: string, version: number, payload: unknown, content_type = "application/json"): Record<string, unknown> => ({
  key,
  content_type,
  payload,
  version,
  updated_at: "2025-01-15T10:30:00.000Z",
});

function poster(client: MockcpClient, n: TestNode) {
  return (body: unknown, gzip = false): Promise<Answer> => client.request("POST", `/v1/nodes/${n.node_id}/report`, { token: n.identity_token, body, gzip });
}

describe("POST /v1/nodes/{id}/report", () => {
  it("follows the TV-11 report sequence", async () => {
    const { client } = await startCp();
    const a = await registerNode(client, "a");
    const post = poster(client, a);
    const first = await post({ entries: [entry("app-health", 1, { ok: true })], deleted: [] });
    expect([first.status, first.body]).toEqual([200, {}]);
    expect((await post({ entries: [entry("app-health", 2, { ok: false })], deleted: [] })).status).toBe(200);
    // Version 2 again with identical content (key order differs): a no-op 200.
    expect((await post({ entries: [{ ...entry("app-health", 2, { ok: false }), updated_at: "2025-01-15T10:31:00Z" }] })).status).toBe(200);
    const conflict = await post({ entries: [entry("app-health", 2, { ok: "different" })], deleted: [] });
    expect(conflict.status).toBe(409);
    expect(conflict.body.error).toBe("version_conflict");
    expect(typeof conflict.body.message).toBe("string");
    expect(conflict.body.conflicts).toEqual([{ key: "app-health", current_version: 2 }]);
    // The agent's automatic resend with current_version + 1.
    expect((await post({ entries: [entry("app-health", 3, { ok: "different" })], deleted: [] }, true)).status).toBe(200);
    expect(await client.reports(a.node_id)).toEqual([entry("app-health", 3, { ok: "different" })]);
  });

  it("treats a different content_type or a lower version as a conflict", async () => {
    const { client } = await startCp();
    const a = await registerNode(client, "a");
    const post = poster(client, a);
    await post({ entries: [entry("r", 4, "x", "text/plain")] });
    expect((await post({ entries: [entry("r", 4, "x", "application/json")] })).body.conflicts).toEqual([{ key: "r", current_version: 4 }]);
    expect((await post({ entries: [entry("r", 3, "x", "text/plain")] })).body.conflicts).toEqual([{ key: "r", current_version: 4 }]);
  });

  it("applies a request atomically and ignores unknown deleted keys", async () => {
    const { client } = await startCp();
    const a = await registerNode(client, "a");
    const post = poster(client, a);
    await post({ entries: [entry("keep", 1, 1), entry("gone", 1, 1), entry("stuck", 5, "s")] });
    const bad = await post({ entries: [entry("keep", 2, 2), entry("stuck", 5, "other"), entry("new", 1, 1)], deleted: ["gone"] });
    expect(bad.status).toBe(409);
    expect(bad.body.conflicts).toEqual([{ key: "stuck", current_version: 5 }]);
    // Nothing of the failed request was applied.
    expect((await client.reports(a.node_id)).map((r) => [r.key, r.version])).toEqual([
      ["gone", 1],
      ["keep", 1],
      ["stuck", 5],
    ]);
    expect((await post({ entries: [entry("keep", 2, 2)], deleted: ["gone", "never-existed"] })).status).toBe(200);
    expect((await client.reports(a.node_id)).map((r) => [r.key, r.version])).toEqual([
      ["keep", 2],
      ["stuck", 5],
    ]);
    // A key deleted and written in one batch ends up written, at any version.
    expect((await post({ entries: [entry("keep", 1, "fresh")], deleted: ["keep"] })).status).toBe(200);
    expect((await client.reports(a.node_id)).find((r) => r.key === "keep")).toMatchObject({ version: 1, payload: "fresh" });
  });

  it("rejects bad bodies with 400 and lets tests seed a conflicting version", async () => {
    const { client } = await startCp();
    const a = await registerNode(client, "a");
    const post = poster(client, a);
    expect((await post({ entries: [entry("../evil", 1, 1)] })).status).toBe(400);
    expect((await post({ entries: [{ key: "k", content_type: "text/plain", version: 1, updated_at: "2025-01-15T10:30:00Z" }] })).status).toBe(400);
    expect((await post({ entries: [entry("k", 0, 1)] })).status).toBe(400);
    expect((await post({ entries: [entry("k", 1.5, 1)] })).status).toBe(400);
    expect((await post({ entries: [{ ...entry("k", 1, 1), updated_at: "yesterday" }] })).status).toBe(400);
    expect((await post({ deleted: ["bad key"] })).status).toBe(400);
    expect((await post({ entries: [], deleted: [] })).status).toBe(200);
    expect(await client.reports(a.node_id)).toEqual([]);

    await client.seedReport(a.node_id, "k", { version: 9, payload: { from: "cp" } });
    expect((await post({ entries: [entry("k", 9, { from: "node" })] })).body.conflicts).toEqual([{ key: "k", current_version: 9 }]);
    await client.clearReports(a.node_id);
    expect((await post({ entries: [entry("k", 1, { from: "node" })] })).status).toBe(200);
  });
});
