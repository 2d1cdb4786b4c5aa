import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { capText, type AuditEvent } from "./event.js";
import { AuditGrouper, type GroupedEvent } from "./group.js";
import { normaliseK8s } from "./k8s.js";
import { normaliseAuditd } from "./normalise.js";
import { fieldText, parseFields, parseHeader, type AuditRecord } from "./record.js";
import { syscallName } from "./syscalls.js";

const testdata = join(import.meta.dirname, "testdata");
const records = (file: string): AuditRecord[] =>
  readFileSync(join(testdata, file), "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditRecord);

function group(recs: AuditRecord[], opts: { maxRecords?: number } = {}) {
  let now = 0;
  const events: GroupedEvent[] = [];
  const malformed: string[] = [];
  const g = new AuditGrouper({ emit: (e) => events.push(e), malformed: (_r, why) => malformed.push(why), now: () => now, ...opts });
  for (const r of recs) g.add(r);
  return { g, events, malformed, advance: (ms: number) => (now += ms) };
}

describe("audit record text", () => {
  it("reads the header's time and serial", () => {
    expect(parseHeader("audit(1700000000.123:42): x=1")).toEqual({ ms: 1_700_000_000_123, serial: 42 });
    expect(parseHeader("no header")).toBeUndefined();
  });

  it("reads quoted, bare and hex fields, and the fields inside a user message", () => {
    const f = parseFields(`audit(1.000:1): pid=7 uid=0 msg='op=PAM:authentication acct="root" exe="/usr/bin/su" res=failed'`);
    expect([f.get("pid"), fieldText("acct", f.get("acct")), fieldText("exe", f.get("exe")), f.get("res")]).toEqual(["7", "root", "/usr/bin/su", "failed"]);
    expect(fieldText("name", "2F6574632F6D7920736563726574")).toBe("/etc/my secret");
    expect(fieldText("pid", "12")).toBe("12"); // numbers are never hex
    expect(fieldText("key", "(null)")).toBeUndefined();
  });

  it("names syscalls on x86_64 and aarch64, and unknown numbers by number", () => {
    expect([syscallName("c000003e", 257), syscallName("c00000b7", 221), syscallName("c000003e", 9999), syscallName(undefined, 1)]).toEqual(["openat", "execve", "syscall_9999", "syscall_1"]);
  });
});

describe("grouping by serial", () => {
  it("emits on EOE, keeps interleaved serials apart, and emits an event without EOE after 1 s idle", () => {
    const { g, events, advance } = group(records("syscall-path.jsonl"));
    expect(events.map((e) => [e.serial, e.records.length])).toEqual([
      [100, 4],
      [102, 3],
      [103, 2],
    ]);
    expect(g.openCount).toBe(1); // the USER_AUTH of serial 101 has no EOE
    advance(999);
    g.sweep();
    expect(events).toHaveLength(3);
    advance(1);
    g.sweep();
    expect(events.map((e) => e.serial)).toEqual([100, 102, 103, 101]);
  });

  it("keeps at most 64 records of one event and counts the rest", () => {
    const recs = Array.from({ length: 70 }, (_, i) => ({ type: 1302, serial: 9, text: `audit(1.000:9): item=${i} name="/f${i}"` }));
    const { events } = group([...recs, { type: 1320, serial: 9, text: "audit(1.000:9): " }]);
    expect(events[0]!.records).toHaveLength(64);
    expect(events[0]!.omitted).toBe(6);
    expect(normaliseAuditd(events[0]!, "h").raw).toMatch(/\[6 more records omitted\]$/);
  });

  it("bounds the serials open at once by emitting the oldest early", () => {
    let now = 0;
    const events: GroupedEvent[] = [];
    const g = new AuditGrouper({ emit: (e) => events.push(e), malformed: () => undefined, maxOpen: 3, now: () => now++ });
    for (let s = 1; s <= 5; s++) g.add({ type: 1300, serial: s, text: `audit(1.000:${s}): x=1` });
    expect(events.map((e) => e.serial)).toEqual([1, 2]);
    expect(g.openCount).toBe(3);
  });

  it("skips malformed records with a reason and still groups the rest", () => {
    const { g, events, malformed } = group(records("malformed.jsonl"));
    g.flush();
    expect(malformed).toHaveLength(3);
    expect(malformed.join(";")).toMatch(/no audit\(<time>:<serial>\) header.*no audit.*serial 9 does not match/);
    expect(events.map((e) => e.serial)).toEqual([12]); // a lone EOE (11) is no event
    const ev = normaliseAuditd(events[0]!, "h");
    expect(ev.action).toBe("SYSCALL"); // syscall=notanumber: no name to give
    expect(ev.subject).toEqual({});
    expect(ev.result).toBe("success");
  });
});

describe("normalised auditd events", () => {
  it("a denied openat: subject, hex-decoded path, syscall name, failure, raw text", () => {
    const { events } = group(records("syscall-path.jsonl"));
    const ev = normaliseAuditd(events[0]!, "node-a");
    expect(ev).toMatchObject({
      timestamp: "2023-11-14T22:13:20.123Z",
      source: "auditd",
      event_type: "SYSCALL",
      subject: { uid: 1000, gid: 1000, pid: 4242, auid: 1000, comm: "cat", exe: "/usr/bin/cat" },
      object: { path: "/etc/my secret" },
      action: "openat",
      result: "failure",
      hostname: "node-a",
    });
    expect(ev.raw.split("\n")).toHaveLength(4);
    expect(ev.raw).toContain("syscall=257");
  });

  it("aarch64 execve, and a user-space PAM failure without EOE", () => {
    const { g, events } = group(records("syscall-path.jsonl"));
    g.flush();
    const exec = normaliseAuditd(events[1]!, "h");
    expect([exec.action, exec.result, exec.object.path, exec.subject.exe]).toEqual(["execve", "success", "/usr/bin/sh", "/usr/bin/dash"]);
    const unknown = normaliseAuditd(events[2]!, "h");
    expect(unknown.action).toBe("syscall_9999");
    const pam = normaliseAuditd(events[3]!, "h");
    expect(pam).toMatchObject({ event_type: "USER_AUTH", action: "USER_AUTH", result: "failure", subject: { pid: 77, uid: 0, auid: 1000, exe: "/usr/bin/su" }, object: {} });
  });

  it("records captured from this kernel's audit multicast group", () => {
    const { g, events } = group(records("live-user-config.jsonl"));
    g.flush();
    const [config, user] = events.map((e) => normaliseAuditd(e, "h")); // the EOE event first, the lone USER record on flush
    expect(user).toMatchObject({ event_type: "USER", action: "USER", result: "failure", subject: { uid: 0, exe: "/usr/sbin/sshd" } });
    expect(config).toMatchObject({ event_type: "CONFIG_CHANGE", action: "sendto", result: "success", subject: { uid: 0, comm: "python3" } });
  });

  it("caps raw at 16 KiB on a character boundary", () => {
    const capped = capText("é".repeat(10_000));
    expect(Buffer.byteLength(capped)).toBeLessThanOrEqual(16 * 1024);
    expect(capped.endsWith("é[truncated]")).toBe(true);
  });
});

describe("Kubernetes audit lines", () => {
  const lines = readFileSync(join(testdata, "k8s-audit.jsonl"), "utf8").split("\n").filter(Boolean);
  const out = lines.map((l) => normaliseK8s(l, "node-k"));

  it("forwards ResponseComplete and Panic only, and reports malformed lines", () => {
    expect(out.map((o) => ("event" in o ? "event" : "skip" in o ? "skip" : "malformed"))).toEqual(["skip", "event", "malformed", "event", "event", "malformed"]);
  });

  it("maps verb, user, object and response code", () => {
    const ev = (i: number) => (out[i] as { event: AuditEvent }).event;
    expect(ev(1)).toMatchObject({
      timestamp: "2026-12-03T18:00:00.012Z",
      source: "k8s-audit",
      event_type: "get",
      action: "get",
      subject: { username: "system:serviceaccount:prod:app", groups: ["system:serviceaccounts", "system:authenticated"] },
      object: { resource: "secrets", namespace: "prod", name: "db", request_uri: "/api/v1/namespaces/prod/secrets/db" },
      result: "success",
      hostname: "node-k",
    });
    expect(ev(1).raw).toBe(lines[1]);
    // Panic without stageTimestamp: requestReceivedTimestamp; 500 is a failure.
    expect(ev(3)).toMatchObject({ timestamp: "2026-12-03T18:00:00.000Z", event_type: "delete", object: { resource: "pods/exec", namespace: "dev" }, result: "failure" });
    expect(ev(4)).toMatchObject({ object: { resource: "nodes", request_uri: "/api/v1/nodes" }, result: "failure" });
  });
});
