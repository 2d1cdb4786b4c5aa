import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { GetAuditStatusResponseSchema, GetStatusResponseSchema } from "../../proto/gen/plexd/node/v1/node_pb.js";
import { auditStatusLine, auditText } from "./audit.js";

const now = Date.parse("2026-12-03T18:00:10Z");

describe("plexd audit", () => {
  it("shows sources, buffer, drops, last flush and recent events", () => {
    const res = create(GetAuditStatusResponseSchema, {
      status: { enabled: true, sources: ["auditd", "kubernetes"], buffered: 2, bufferSize: 10000, dropped: 3n, lastFlush: { at: timestampFromMs(now - 5000), ok: true } },
      pipeline: { name: "audit", sentTotal: 40n, sentBatchesTotal: 4n, droppedOverflowTotal: 3n },
      sources: [
        { name: "auditd", state: "unavailable", detail: "privhelper is not in the host's initial network namespace", recordsTotal: 0n },
        { name: "kubernetes", state: "reading", detail: "via privhelper", eventsTotal: 40n, recordsTotal: 80n, malformedTotal: 1n, lastEventAt: timestampFromMs(now - 2000) },
      ],
      recentEvents: [
        JSON.stringify({ timestamp: "2026-12-03T18:00:08Z", source: "k8s-audit", event_type: "get", action: "get", result: "success", subject: { username: "alice" }, object: { resource: "secrets", namespace: "prod", name: "db" } }),
        JSON.stringify({ timestamp: "2026-12-03T18:00:09Z", source: "auditd", event_type: "SYSCALL", action: "openat", result: "failure", subject: { uid: 1000, exe: "/usr/bin/cat" }, object: { path: "/etc/shadow" } }),
      ],
    });
    const text = auditText(res, now);
    expect(text).toMatch(/^Sources {5}auditd, kubernetes$/m);
    expect(text).toMatch(/^Buffer {6}2 \/ 10000, dropped 3 \(overflow 3, oversize 0\)$/m);
    expect(text).toMatch(/^Last flush {2}ok, 5s ago$/m);
    expect(text).toMatch(/auditd\s+unavailable\s+0\s+0\s+0\s+never\s+privhelper is not in the host's initial network namespace/);
    expect(text).toMatch(/k8s-audit\s+get\s+get\s+success\s+alice\s+prod\/secrets\/db/);
    expect(text).toMatch(/auditd\s+SYSCALL\s+openat\s+failure\s+\/usr\/bin\/cat uid 1000\s+\/etc\/shadow/);
  });

  it("says when audit forwarding is off", () => {
    expect(auditText(create(GetAuditStatusResponseSchema, { status: { enabled: false, sources: ["auditd"] } }), now)).toBe("Audit forwarding is off (audit.enabled: false); configured sources: auditd");
  });

  it("status line: not running, forwarding, or kernel records unavailable", () => {
    expect(auditStatusLine(create(GetStatusResponseSchema, {}))[0]![1]).toMatch(/^not running/);
    const running = create(GetStatusResponseSchema, { pipelines: [{ name: "audit" }] });
    expect(auditStatusLine(running)[0]![1]).toMatch(/^forwarding; /);
    running.health.push({ code: "audit_unavailable", severity: "info", text: "x", $typeName: "plexd.node.v1.HealthCondition" } as never);
    expect(auditStatusLine(running)[0]![1]).toMatch(/^kernel records UNAVAILABLE/);
  });
});
