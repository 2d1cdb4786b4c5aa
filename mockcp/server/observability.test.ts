import { afterEach, describe, expect, it } from "vitest";
import type { MockcpClient } from "../control/client.js";
import { cleanup, registerNode, startCp, type TestNode } from "../../test/support/mockcp-testkit.js";

afterEach(cleanup);

const metric = (i: number): Record<string, unknown> => ({ timestamp: "2025-01-15T10:30:00.000Z", group: "node_resources", data: { cpu: i } });
const logLine = (i: number): Record<string, unknown> => ({
  timestamp: "2025-01-15T10:30:00.000Z",
  source: "journald",
  unit: "sshd.service",
  message: `line ${i}`,
  severity: "info",
  hostname: "a",
});
const ndjson = (items: unknown[]): string => items.map((x) => JSON.stringify(x)).join("\n") + "\n";

function uploader(client: MockcpClient, n: TestNode) {
  return (kind: "metrics" | "logs" | "audit", body: string, opts: { gzip?: boolean; type?: string } = {}) =>
    client.request<{ error?: string }>("POST", `/v1/nodes/${n.node_id}/${kind}`, {
      token: n.identity_token,
      rawBody: body,
      gzip: opts.gzip ?? true,
      headers: { "content-type": opts.type ?? (kind === "metrics" ? "application/json" : "application/x-ndjson") },
    });
}

describe("observability uploads (TV-11)", () => {
  it("accepts gzip and plain bodies with 202 and decodes arrays and NDJSON", async () => {
    const { client } = await startCp();
    const a = await registerNode(client, "a");
    const up = uploader(client, a);
    const metrics = [metric(1), { ...metric(2), group: "peer_latency", peer_id: "n_b" }];
    const r = await up("metrics", JSON.stringify(metrics));
    expect([r.status, r.body]).toEqual([202, {}]);
    expect((await up("logs", ndjson([logLine(1), logLine(2)]))).status).toBe(202);
    expect((await up("logs", ndjson([logLine(3)]), { gzip: false, type: "application/x-ndjson; charset=utf-8" })).status).toBe(202);
    const auditLine = { timestamp: "2025-01-15T10:30:00.000Z", source: "auditd", event_type: "exec", subject: { uid: 0 }, object: { path: "/bin/sh" }, action: "execve", result: "success", hostname: "a", raw: "..." };
    expect((await up("audit", ndjson([auditLine]))).status).toBe(202);

    const m = await client.observability(a.node_id, "metrics");
    expect(m.items).toEqual(metrics);
    expect(m.counts).toEqual({ batches: 1, items: 2, rejected_413: 0, rejected_429: 0 });
    expect(m.batches[0]).toMatchObject({ gzip: true, content_type: "application/json", decoded_bytes: JSON.stringify(metrics).length });
    expect(m.batches[0]?.wire_bytes).toBeGreaterThan(0);
    const logs = await client.observability(a.node_id, "logs");
    expect(logs.items).toEqual([logLine(1), logLine(2), logLine(3)]);
    expect(logs.batches.map((b) => b.gzip)).toEqual([true, false]);
    expect((await client.observability(a.node_id, "audit")).items).toEqual([auditLine]);
    // The request log keeps the decoded text too.
    expect((await client.requests({ path: `/v1/nodes/${a.node_id}/logs` }))[0]?.body).toBe(ndjson([logLine(1), logLine(2)]));

    await client.clearObservability(a.node_id, "logs");
    expect((await client.observability(a.node_id, "logs")).counts.items).toBe(0);
  });

  it("rejects wrong shapes and content types", async () => {
    const { client } = await startCp();
    const a = await registerNode(client, "a");
    const up = uploader(client, a);
    expect((await up("metrics", JSON.stringify({ not: "an array" }))).status).toBe(400);
    expect((await up("metrics", JSON.stringify([1, 2]))).status).toBe(400);
    expect((await up("logs", '{"ok":1}\nnot json\n')).status).toBe(400);
    expect((await up("audit", "[1]\n")).status).toBe(400);
    // Item shapes of the metrics, logs and audit uploads.
    expect((await up("metrics", JSON.stringify([{ ...metric(1), group: "bogus" }]))).status).toBe(400);
    expect((await up("metrics", JSON.stringify([{ ...metric(1), data: 5 }]))).status).toBe(400);
    expect((await up("logs", ndjson([{ ...logLine(1), severity: "warn" }]))).status).toBe(400);
    expect((await up("logs", ndjson([{ ...logLine(1), message: "x".repeat(16 * 1024 + 12) }]))).status).toBe(400);
    expect((await up("logs", ndjson([{ ...logLine(1), message: `${"x".repeat(16 * 1024)}[truncated]` }]))).status).toBe(202);
    expect((await up("audit", ndjson([{ timestamp: "2025-01-15T10:30:00Z", source: "auditd", event_type: "exec", subject: {}, object: {}, action: "x", result: "ok", hostname: "a", raw: "" }]))).status).toBe(400);
    expect((await up("logs", ndjson([logLine(1)]), { type: "application/json" })).status).toBe(415);
    expect((await up("metrics", "[]", { type: "text/plain" })).status).toBe(415);
    expect((await client.request("POST", `/v1/nodes/${a.node_id}/metrics`, { token: "wrong", body: [] })).status).toBe(401);
    expect((await client.observability(a.node_id, "logs")).counts.batches).toBe(1);
    expect((await client.observability(a.node_id, "metrics")).counts.batches).toBe(0);
  });

  it("answers 413 for decoded bodies over the test limit so the agent can split", async () => {
    const { client } = await startCp();
    const a = await registerNode(client, "a");
    const up = uploader(client, a);
    const lines = Array.from({ length: 8 }, (_, i) => logLine(i));
    const whole = ndjson(lines);
    const half = ndjson(lines.slice(0, 4));
    await client.setObservabilityFailure({ mode: "too_large", max_bytes: half.length + 10, kinds: ["logs"] });
    const r = await up("logs", whole);
    expect(r.status).toBe(413);
    expect(r.body.error).toBe("body_too_large");
    expect((await up("logs", half)).status).toBe(202);
    expect((await up("logs", ndjson(lines.slice(4)))).status).toBe(202);
    // Metrics are not covered by this failure mode.
    expect((await up("metrics", JSON.stringify(Array.from({ length: 50 }, (_, i) => metric(i))))).status).toBe(202);
    const v = await client.observability(a.node_id, "logs");
    expect(v.items).toEqual(lines);
    expect(v.counts).toMatchObject({ batches: 2, rejected_413: 1 });
    await client.clearObservabilityFailure();
    expect((await up("logs", whole)).status).toBe(202);
  });

  it("answers 429 with Retry-After for the next N requests", async () => {
    const { client } = await startCp();
    const a = await registerNode(client, "a");
    const b = await registerNode(client, "b");
    const up = uploader(client, a);
    await client.setObservabilityFailure({ mode: "rate_limit", retry_after: 7, count: 2, node_id: a.node_id });
    expect((await uploader(client, b)("metrics", "[]")).status).toBe(202);
    const r1 = await up("metrics", "[]");
    expect(r1.status).toBe(429);
    expect(r1.headers["retry-after"]).toBe("7");
    expect((await up("audit", ndjson([{ x: 1 }]))).status).toBe(429);
    expect((await up("metrics", "[]")).status).toBe(202);
    expect((await client.observability(a.node_id, "metrics")).counts).toEqual({ batches: 1, items: 0, rejected_413: 0, rejected_429: 1 });

    await client.setObservabilityFailure({ mode: "rate_limit", retry_after: null });
    const r2 = await up("logs", ndjson([logLine(1)]));
    expect(r2.status).toBe(429);
    expect(r2.headers["retry-after"]).toBeUndefined();
    expect((await client.request("PUT", "/control/v1/observability/failure", { body: { mode: "too_large" } })).status).toBe(400);
  });
});
