import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ReadMeshResponseSchema, type ReadMeshResponse } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { HealthRegistry } from "../health/registry.js";
import { DesiredStateStore } from "../state/desired.js";
import { FakeClock } from "../util/clock.js";
import { createLogger } from "../util/log.js";
import { AgentEventFeed, healthEvents, tunnelEvents, tunnelDownAfterMs } from "./agent-events.js";
import type { AgentEvent } from "./backend.js";

const t0 = Date.parse("2025-01-15T10:30:00Z");
const mesh = (peers: { key: string; hs?: number; endpoint?: string }[]): ReadMeshResponse =>
  create(ReadMeshResponseSchema, {
    exists: true,
    up: true,
    peers: peers.map((p) => ({ publicKey: p.key, endpoint: p.endpoint ?? "", ...(p.hs === undefined ? {} : { lastHandshake: timestampFromMs(p.hs) }) })),
  });
const ids: Record<string, string> = { kb: "n_b", kc: "n_c" };
const idOf = (k: string): string | undefined => ids[k];

describe("tunnelEvents", () => {
  it("the baseline read reports nothing; later reads report handshakes and up/down transitions", () => {
    const base = tunnelEvents(undefined, mesh([{ key: "kb", hs: t0 - 1000 }, { key: "kc" }]), t0, idOf);
    expect(base.events).toEqual([]);
    const first = tunnelEvents(base.marks, mesh([{ key: "kb", hs: t0 - 1000 }, { key: "kc", hs: t0 + 500, endpoint: "192.0.2.3:51820" }]), t0 + 1000, idOf);
    expect(first.events).toEqual([
      { kind: "handshake", subject: "n_c", detail: "handshake with 192.0.2.3:51820" },
      { kind: "peer_up", subject: "n_c", detail: "tunnel up with 192.0.2.3:51820" },
    ]);
    // No new handshake for 180 s: down. Then one comes: handshake and up again.
    const later = t0 + 1000 + tunnelDownAfterMs;
    const stale = tunnelEvents(first.marks, mesh([{ key: "kb", hs: t0 - 1000 }, { key: "kc", hs: t0 + 500 }]), later, idOf);
    expect(stale.events).toEqual([
      { kind: "peer_down", subject: "n_b", detail: "no handshake for 180 s" },
      { kind: "peer_down", subject: "n_c", detail: "no handshake for 180 s" },
    ]);
    const back = tunnelEvents(stale.marks, mesh([{ key: "kb", hs: later }, { key: "kc", hs: t0 + 500 }]), later + 10, idOf);
    expect(back.events.map((e) => `${e.kind}:${e.subject}`)).toEqual(["handshake:n_b", "peer_up:n_b"]);
  });

  it("a peer that leaves the mesh while up is down; unknown keys are named by key", () => {
    const base = tunnelEvents(undefined, mesh([{ key: "kb", hs: t0 }, { key: "kz", hs: t0 }]), t0, idOf);
    expect(base.marks.get("kz")?.id).toBe("key kz…");
    expect(tunnelEvents(base.marks, mesh([]), t0 + 1000, idOf).events).toEqual([
      { kind: "peer_down", subject: "n_b", detail: "removed from the mesh" },
      { kind: "peer_down", subject: "key kz…", detail: "removed from the mesh" },
    ]);
  });
});

describe("healthEvents", () => {
  it("raised, changed and cleared conditions", () => {
    const c = (code: string, text: string) => ({ code, severity: "warning" as const, text, since: t0 });
    const prev = new Map([["a", c("a", "one")], ["b", c("b", "two")]]);
    expect(healthEvents(prev, [c("a", "one"), c("b", "three"), c("d", "new")])).toEqual([
      { kind: "health_changed", subject: "b", detail: "warning: three" },
      { kind: "health_changed", subject: "d", detail: "warning: new" },
    ]);
    expect(healthEvents(prev, [])).toEqual([
      { kind: "health_changed", subject: "a", detail: "cleared" },
      { kind: "health_changed", subject: "b", detail: "cleared" },
    ]);
  });
});

describe("AgentEventFeed", () => {
  let dir: string;
  let ac: AbortController;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "plexd-events-"));
    ac = new AbortController();
  });
  afterEach(async () => {
    ac.abort();
    await rm(dir, { recursive: true, force: true });
  });

  it("health, policy and drift events as they happen; the kernel is read only while someone watches", async () => {
    const clock = new FakeClock(t0);
    const health = new HealthRegistry(() => clock.now());
    const store = await DesiredStateStore.open(dir);
    store.update((s) => {
      s.peers = { n_b: { id: "n_b", public_key: "kb", mesh_ip: "10.100.0.3", endpoint: "", allowed_ips: ["10.100.0.3/32"], psk: "" } };
      return ["peers"];
    });
    let reads = 0;
    let live = mesh([{ key: "kb" }]);
    const feed = new AgentEventFeed({ health, store, clock, log: createLogger({ name: "t", level: "silent" }), pollMs: 2000, readMesh: async () => (reads++, live) }, ac.signal);
    const done = feed.run(ac.signal);
    await clock.advance(10_000);
    expect(reads).toBe(0);

    const seen: AgentEvent[] = [];
    const unsubscribe = feed.subscribe((e) => seen.push(e));
    await clock.waitForSleepers();
    expect(reads).toBe(1);
    health.set("privhelper_unavailable", "critical", "gone");
    store.update((s) => ((s.policies = [{ id: "p1", rules: [] }]), ["policies"]));
    feed.drift([{ type: "peer_added", detail: "peer n_b" }]);
    live = mesh([{ key: "kb", hs: clock.now() }]);
    await clock.advance(2000);
    expect(seen.map((e) => [e.kind, e.subject, e.detail])).toEqual([
      ["health_changed", "privhelper_unavailable", "critical: gone"],
      ["policy_changed", "p1", "1 policy in effect"],
      ["drift_corrected", "peer_added", "peer n_b"],
      ["handshake", "n_b", "handshake"],
      ["peer_up", "n_b", "tunnel up"],
    ]);
    expect(seen[0]!.at).toBe(t0 + 10_000);

    unsubscribe();
    await clock.advance(2000);
    const after = reads;
    await clock.advance(20_000);
    expect(reads).toBe(after);
    ac.abort();
    await done;
  });
});
