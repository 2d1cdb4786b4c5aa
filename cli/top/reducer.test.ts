import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { GetStatusResponseSchema, PeerSchema, WatchResponseSchema, type Peer } from "../../proto/gen/plexd/node/v1/node_pb.js";
import { keyActions } from "./keys.js";
import { initialState, maxEvents, peerState, reducer, sortColumns, visiblePeers, type TopAction, type TopState } from "./reducer.js";

const now = Date.parse("2025-01-15T10:30:00Z");
const peer = (id: string, o: Partial<{ ip: string; ep: string; hs: number; rx: bigint; tx: bigint; rtt: number }> = {}): Peer =>
  create(PeerSchema, {
    peerId: id,
    meshIp: o.ip ?? "10.100.0.2",
    endpoint: o.ep ?? "",
    visible: true,
    ...(o.hs === undefined ? {} : { lastHandshake: timestampFromMs(o.hs) }),
    rxBytes: o.rx ?? 0n,
    txBytes: o.tx ?? 0n,
    rttMs: o.rtt ?? 0,
  });

const run = (actions: TopAction[], start: TopState = initialState()): TopState => actions.reduce(reducer, start);

describe("top reducer", () => {
  it("computes rx/tx rates from byte deltas between polls", () => {
    const s = run([
      { type: "peers", peers: [peer("a", { rx: 1000n, tx: 0n })], at: now },
      { type: "peers", peers: [peer("a", { rx: 5000n, tx: 2048n })], at: now + 2000 },
    ]);
    expect(s.peers[0]).toMatchObject({ rxRate: 2000, txRate: 1024, rxBytes: 5000n });
    // First poll: no rate yet. A counter that went backwards (interface recreated): none either.
    expect(run([{ type: "peers", peers: [peer("a", { rx: 1000n })], at: now }]).peers[0]!.rxRate).toBeUndefined();
    expect(reducer(s, { type: "peers", peers: [peer("a", { rx: 10n })], at: now + 4000 }).peers[0]!.rxRate).toBeUndefined();
  });

  it("pause freezes status and peers but keeps collecting events", () => {
    const st = create(GetStatusResponseSchema, { phase: "running" });
    let s = run([{ type: "status", status: st, at: 0 }, { type: "togglePause" }]);
    s = reducer(s, { type: "status", status: create(GetStatusResponseSchema, { phase: "degraded" }), at: 0 });
    s = reducer(s, { type: "peers", peers: [peer("a")], at: now });
    s = reducer(s, { type: "event", event: create(WatchResponseSchema, { kind: "peer_up", subject: "a" }), now });
    expect(s.status?.phase).toBe("running");
    expect(s.peers).toEqual([]);
    expect(s.events.map((e) => e.subject)).toEqual(["a"]);
    expect(reducer(s, { type: "togglePause" }).paused).toBe(false);
  });

  it("keeps the newest events first and bounded", () => {
    const events: TopAction[] = Array.from({ length: maxEvents + 5 }, (_, i) => ({
      type: "event",
      event: create(WatchResponseSchema, { kind: "handshake", subject: `p${i}`, at: timestampFromMs(now + i) }),
      now,
    }));
    const s = run(events);
    expect(s.events).toHaveLength(maxEvents);
    expect(s.events[0]).toMatchObject({ subject: `p${maxEvents + 4}`, at: now + maxEvents + 4 });
  });

  it("disconnect and reconnect", () => {
    const s = run([{ type: "disconnected", error: "ECONNREFUSED" }]);
    expect(s).toMatchObject({ connected: false, error: "ECONNREFUSED" });
    expect(reducer(s, { type: "status", status: create(GetStatusResponseSchema, {}), at: 0 })).toMatchObject({ connected: true, error: undefined });
  });

  it("sorts by each column and filters by id, IP or endpoint", () => {
    const s = run([
      {
        type: "peers",
        peers: [
          peer("charlie", { ip: "10.100.0.3", ep: "192.0.2.30:1", hs: now - 10_000, rx: 10n, rtt: 9 }),
          peer("alpha", { ip: "10.100.0.1", ep: "192.0.2.10:1", hs: now - 500_000, rx: 30n, rtt: 1 }),
          peer("bravo", { ip: "10.100.0.2", ep: "192.0.2.20:1", rx: 20n }),
        ],
        at: now,
      },
    ]);
    const order = (st: TopState): string[] => visiblePeers(st, now).map((p) => p.peerId);
    expect(order(s)).toEqual(["alpha", "bravo", "charlie"]);
    const bySort: Record<string, string[]> = {
      state: ["charlie", "alpha", "bravo"],
      endpoint: ["alpha", "bravo", "charlie"],
      handshake: ["charlie", "alpha", "bravo"],
      rx: ["alpha", "bravo", "charlie"],
      tx: ["alpha", "bravo", "charlie"],
      rtt: ["alpha", "charlie", "bravo"],
      peer: ["alpha", "bravo", "charlie"],
    };
    let t = s;
    for (let i = 1; i <= sortColumns.length; i++) {
      t = reducer(t, { type: "cycleSort" });
      expect(order(t), t.sort).toEqual(bySort[t.sort]);
    }
    expect(t.sort).toBe("peer");
    expect(peerState(s.peers.find((p) => p.peerId === "alpha")!, now)).toBe("stale");

    const f = run([{ type: "startFilter" }, { type: "filterInput", text: "0.0.2" }], s);
    expect(order(f)).toEqual(["bravo"]); // mesh IP 10.100.0.2
    const g = run([{ type: "filterBackspace" }, { type: "filterBackspace" }, { type: "filterBackspace" }, { type: "filterInput", text: "2.30" }, { type: "endFilter", keep: true }], f);
    expect(g.filter).toBe("0.2.30");
    expect(order(run([{ type: "startFilter" }, { type: "filterInput", text: "2.30" }], s))).toEqual(["charlie"]); // endpoint
    expect(order(run([{ type: "startFilter" }, { type: "filterInput", text: "CHAR" }, { type: "endFilter", keep: true }], s))).toEqual(["charlie"]);
    expect(run([{ type: "startFilter" }, { type: "filterInput", text: "x" }, { type: "endFilter", keep: false }], s).filter).toBe("");
  });

  it("Tab cycles panels and resize updates the size", () => {
    const s = run([{ type: "switchPanel" }]);
    expect(s.panel).toBe("rules");
    expect(run([{ type: "switchPanel" }, { type: "switchPanel" }, { type: "switchPanel" }]).panel).toBe("health");
    expect(run([{ type: "switchPanel" }, { type: "switchPanel" }, { type: "switchPanel" }, { type: "switchPanel" }]).panel).toBe("executions");
    expect(run(Array.from({ length: 5 }, () => ({ type: "switchPanel" }) as const)).panel).toBe("telemetry");
    expect(run(Array.from({ length: 6 }, () => ({ type: "switchPanel" }) as const)).panel).toBe("bridge");
    expect(run(Array.from({ length: 7 }, () => ({ type: "switchPanel" }) as const)).panel).toBe("peers");
    expect(reducer(s, { type: "resize", columns: 80, rows: 24 })).toMatchObject({ columns: 80, rows: 24 });
  });
});

describe("top keys", () => {
  it("Esc leaves the filter prompt (Ink reports a lone Esc with meta set), closes the help, then clears a kept filter", () => {
    expect(keyActions(true, "", { escape: true, meta: true }).actions).toEqual([{ type: "endFilter", keep: false }]);
    expect(keyActions(false, "", { escape: true, meta: true }).actions).toEqual([{ type: "escape" }]);
    expect(keyActions(false, "?", {}).actions).toEqual([{ type: "toggleHelp" }]);
    const helped = run([{ type: "toggleHelp" }, { type: "startFilter" }, { type: "filterInput", text: "x" }, { type: "endFilter", keep: true }]);
    expect(helped).toMatchObject({ help: true, filter: "x" });
    const once = reducer(helped, { type: "escape" });
    expect(once).toMatchObject({ help: false, filter: "x" });
    expect(reducer(once, { type: "escape" })).toMatchObject({ help: false, filter: "" });
  });

  it("maps single keys", () => {
    expect(keyActions(false, "q", {}).quit).toBe(true);
    expect(keyActions(false, "c", { ctrl: true }).quit).toBe(true);
    expect(keyActions(true, "c", { ctrl: true }).quit).toBe(true);
    expect(keyActions(false, "", { tab: true }).actions).toEqual([{ type: "switchPanel" }]);
    expect(keyActions(false, "s", {}).actions).toEqual([{ type: "cycleSort" }]);
    expect(keyActions(false, "p", {}).actions).toEqual([{ type: "togglePause" }]);
    expect(keyActions(false, "r", {}).refresh).toBe(true);
    // While filtering, letters are text, not commands.
    expect(keyActions(true, "q", {})).toEqual({ actions: [{ type: "filterInput", text: "q" }], quit: false, refresh: false });
    expect(keyActions(true, "", { escape: true }).actions).toEqual([{ type: "endFilter", keep: false }]);
    expect(keyActions(true, "", { backspace: true }).actions).toEqual([{ type: "filterBackspace" }]);
  });

  it("walks a burst of keys delivered in one read", () => {
    const r = keyActions(false, "/bra\r\tq", {});
    expect(r.actions).toEqual([
      { type: "startFilter" },
      { type: "filterInput", text: "b" },
      { type: "filterInput", text: "r" },
      { type: "filterInput", text: "a" },
      { type: "endFilter", keep: true },
      { type: "switchPanel" },
    ]);
    expect(r.quit).toBe(true);
  });
});
