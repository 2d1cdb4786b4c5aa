import { afterEach, describe, expect, it } from "vitest";
import type { MockcpClient } from "../control/client.js";
import { cleanup, nextEvent, openStream, registerNode, startCp, type TestNode } from "../../test/support/mockcp-testkit.js";

afterEach(cleanup);

const result = (id: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  execution_id: id,
  status: "success",
  exit_code: 0,
  stdout: "ok\n",
  stderr: "",
  duration: "2.34s",
  finished_at: "2025-01-15T10:30:02.000Z",
  triggered_by: { type: "control_plane", session_id: "", user_id: "", email: "" },
  ...extra,
});

function callbacks(client: MockcpClient, n: TestNode) {
  return {
    ack: (id: string, body: unknown): Promise<{ status: number; body: { error?: string } }> =>
      client.request("POST", `/v1/nodes/${n.node_id}/executions/${encodeURIComponent(id)}/ack`, { token: n.identity_token, body }),
    result: (id: string, body: unknown): Promise<{ status: number; body: { error?: string } }> =>
      client.request("POST", `/v1/nodes/${n.node_id}/executions/${encodeURIComponent(id)}/result`, { token: n.identity_token, body }),
  };
}

describe("execution callbacks", () => {
  it("knows executions pushed as action_request and records acks and the first result", async () => {
    const { client } = await startCp();
    const a = await registerNode(client, "a");
    const s = await openStream(client, a);
    const pushed = await client.pushAction(a.node_id, { action: "diagnostics.collect", parameters: { include_network: true } });
    expect(pushed.execution_id).toMatch(/^exec_/);
    const ev = await nextEvent(s);
    expect(ev.type).toBe("action_request");
    expect(ev.payload).toMatchObject({
      execution_id: pushed.execution_id,
      action: "diagnostics.collect",
      type: "builtin",
      parameters: { include_network: true },
      timeout: "30s",
      triggered_by: { type: "control_plane", session_id: "", user_id: "", email: "" },
    });
    expect(ev.payload["callback_url"]).toMatch(new RegExp(`/v1/nodes/${a.node_id}/executions/${pushed.execution_id}$`));

    const cb = callbacks(client, a);
    const id = pushed.execution_id;
    const acked = await cb.ack(id, { execution_id: id, status: "accepted", reason: "" });
    expect([acked.status, acked.body]).toEqual([200, {}]);
    expect((await cb.result(id, result(id))).status).toBe(200);
    // Idempotent: a second delivery is 200 but the first result wins.
    expect((await cb.result(id, result(id, { status: "failure", exit_code: 1 }))).status).toBe(200);
    const rec = await client.execution(a.node_id, id);
    expect(rec.request?.event_id).toBe(pushed.event_id);
    expect(rec.acks.map((x) => x.body)).toEqual([{ execution_id: id, status: "accepted", reason: "" }]);
    expect(rec.result?.body).toEqual(result(id));
    expect(rec.result_deliveries).toBe(2);
    expect((await client.waitForResult(a.node_id, id)).result?.body).toEqual(result(id));
  });

  it("also learns execution ids from action_requests pushed as raw events", async () => {
    const { client } = await startCp();
    const a = await registerNode(client, "a");
    await client.pushEvent(a.node_id, { event_type: "action_request", payload: { execution_id: "exec_raw", action: "hooks/backup", type: "hook" } });
    const cb = callbacks(client, a);
    expect((await cb.ack("exec_raw", { execution_id: "exec_raw", status: "rejected", reason: "unknown_action" })).status).toBe(200);
    expect((await client.executions(a.node_id)).map((e) => e.execution_id)).toEqual(["exec_raw"]);
  });

  it("answers 404 for unknown executions except results of local runs, 400 for bad bodies", async () => {
    const { client } = await startCp();
    const a = await registerNode(client, "a");
    const b = await registerNode(client, "b");
    const cb = callbacks(client, a);
    expect((await cb.ack("exec_nope", { execution_id: "exec_nope", status: "accepted", reason: "" })).status).toBe(404);
    const unknown = await cb.result("exec_nope", result("exec_nope"));
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toBe("execution_not_found");

    const local = "local_3f1c2a7e-1111-4222-8333-944445555666";
    expect((await cb.result(local, result(local, { triggered_by: { type: "local_emergency", session_id: "", user_id: "", email: "" } }))).status).toBe(200);
    expect((await cb.result("sess_run", result("sess_run", { triggered_by: { type: "session", session_id: "s1", user_id: "u", email: "e@x" } }))).status).toBe(200);
    expect((await client.executions(a.node_id)).map((e) => [e.execution_id, e.request])).toEqual([
      [local, null],
      ["sess_run", null],
    ]);
    // An ack for a local run is still unknown to the CP.
    expect((await cb.ack(local, { execution_id: local, status: "accepted", reason: "" })).status).toBe(404);

    const { execution_id: id } = await client.pushAction(b.node_id, { action: "diagnostics.collect" });
    // Known for b only.
    expect((await cb.ack(id, { execution_id: id, status: "accepted", reason: "" })).status).toBe(404);
    const cbb = callbacks(client, b);
    expect((await cbb.ack(id, { execution_id: "exec_other", status: "accepted", reason: "" })).status).toBe(400);
    expect((await cbb.ack(id, { execution_id: id, status: "maybe", reason: "" })).status).toBe(400);
    expect((await cbb.ack(id, { execution_id: id, status: "rejected", reason: "" })).status).toBe(400);
    expect((await cbb.ack(id, { execution_id: id, status: "rejected", reason: "bored" })).status).toBe(400);
    expect((await cbb.result(id, result(id, { duration: "2 seconds" }))).status).toBe(400);
    expect((await cbb.result(id, result(id, { status: "done" }))).status).toBe(400);
    expect((await cbb.result(id, result(id, { stdout: "x".repeat(65537) }))).status).toBe(400);
    expect((await client.execution(b.node_id, id)).result).toBeNull();
    expect((await client.request("GET", `/control/v1/nodes/${b.node_id}/executions/exec_none`)).status).toBe(404);
  });
});
