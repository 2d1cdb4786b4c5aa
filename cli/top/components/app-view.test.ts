import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { render } from "ink-testing-library";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ExecutionSchema, GetBridgeStatusResponseSchema, GetStatusResponseSchema, ListUserAccessPeersResponseSchema, PeerSchema, RenderedRuleSchema, WatchResponseSchema } from "../../../proto/gen/plexd/node/v1/node_pb.js";
import { initialState, reducer, type TopAction, type TopState } from "../reducer.js";
import { loadUi, type Ui } from "../ui.js";
import { makeAppView } from "./app-view.js";

const now = Date.parse("2025-01-15T10:30:00Z");
let ui: Ui;
let cleanup: (() => void) | undefined;

beforeAll(async () => {
  ui = await loadUi();
});
afterEach(() => {
  cleanup?.();
  cleanup = undefined;
});

function frame(state: TopState): string {
  const AppView = makeAppView(ui);
  const r = render(ui.React.createElement(AppView, { state, now }));
  cleanup = r.unmount;
  return r.lastFrame() ?? "";
}

const status = create(GetStatusResponseSchema, {
  version: "0.1.0",
  mode: "node",
  phase: "running",
  nodeId: "node_abc",
  meshIp: "10.100.0.7",
  uptime: "2h3m4s",
  sse: { connected: true, reconnects: 3 },
  lastHeartbeat: { at: timestampFromMs(now - 12_000), ok: true },
  nat: { publicEndpoint: "198.51.100.7:51820", type: "full_cone" },
  health: [{ code: "privhelper_unreachable", severity: "critical", text: "privhelper socket refused", since: timestampFromMs(now - 60_000) }],
});

const peers = [
  create(PeerSchema, { peerId: "node_zulu", meshIp: "10.100.0.26", endpoint: "192.0.2.26:51820", lastHandshake: timestampFromMs(now - 5000), rxBytes: 1000n, rttMs: 2.5 }),
  create(PeerSchema, { peerId: "node_alpha", meshIp: "10.100.0.2", endpoint: "192.0.2.2:51820", rxBytes: 0n }),
];

const base = (actions: TopAction[]): TopState =>
  [{ type: "status", status, at: now - 2000 } as TopAction, { type: "peers", peers, at: now - 2000 } as TopAction, ...actions].reduce(reducer, initialState({ columns: 120, rows: 30 }));

describe("plexd top views", () => {
  it("header: node id, mesh IP, control-plane connection, phase, uptime, health", () => {
    const f = frame(base([]));
    expect(f).toContain("node_abc");
    expect(f).toContain("10.100.0.7");
    expect(f).toContain("running");
    // The uptime runs on by the clock from when the status arrived (2 s before `now`).
    expect(f).toContain("up 2h3m6s");
    expect(f).toMatch(/control plane connected {2}\(3 reconnects\)/);
    expect(f).toContain("heartbeat 12s ago");
    expect(f).toContain("CRITICAL privhelper_unreachable: privhelper socket refused");
    expect(f).not.toContain("agent not reachable");
  });

  it("peers table: rows with state, endpoint, handshake age, rate and RTT, sorted by the chosen column", () => {
    const withRates = base([{ type: "peers", peers: [create(PeerSchema, { ...peers[0]!, rxBytes: 5096n }), peers[1]!], at: now }]);
    const f = frame(withRates);
    const lines = f.split("\n");
    const zulu = lines.find((l) => l.includes("node_zulu"))!;
    expect(zulu).toMatch(/10\.100\.0\.26\s+up\s+192\.0\.2\.26:51820\s+5s\s+2\.0 KiB\/s\s+0 B\/s\s+2\.5ms/);
    expect(lines.find((l) => l.includes("node_alpha"))).toMatch(/never/);
    expect(lines.findIndex((l) => l.includes("node_alpha"))).toBeLessThan(lines.findIndex((l) => l.includes("node_zulu")));
    expect(f).toContain("PEER▼");
    const byHandshake = frame(reducer(reducer(reducer(withRates, { type: "cycleSort" }), { type: "cycleSort" }), { type: "cycleSort" }));
    expect(byHandshake).toContain("HANDSHAKE▼");
    const l2 = byHandshake.split("\n");
    expect(l2.findIndex((l) => l.includes("node_zulu"))).toBeLessThan(l2.findIndex((l) => l.includes("node_alpha")));
  });

  it("peers table: a quarantined peer shows as such, with its reason under the table", () => {
    const bad = create(PeerSchema, { peerId: "node_bad", meshIp: "10.100.0.9", endpoint: "", quarantineReason: "public_key: already used by peer node_zulu" });
    const f = frame(base([{ type: "peers", peers: [...peers, bad], at: now }]));
    const lines = f.split("\n");
    expect(lines.find((l) => l.startsWith("node_bad"))).toMatch(/10\.100\.0\.9\s+quar\s/);
    expect(f).toContain("quarantined node_bad: public_key: already used by peer node_zulu");
  });

  it("peers table: filter prompt and filtered rows", () => {
    const typing = frame(base([{ type: "startFilter" }, { type: "filterInput", text: "zu" }]));
    expect(typing).toContain("filter: zu");
    expect(typing).toContain("node_zulu");
    expect(typing).not.toContain("node_alpha");
    const none = frame(base([{ type: "startFilter" }, { type: "filterInput", text: "nothing" }, { type: "endFilter", keep: true }]));
    expect(none).toContain("no peer matches the filter");
  });

  it("80×24 keeps the columns that matter, drops the rest whole and wraps nothing; wide terminals show all", () => {
    const f = frame(base([{ type: "resize", columns: 80, rows: 24 }]));
    const lines = f.split("\n");
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(80);
    expect(lines.length).toBeLessThanOrEqual(24);
    const head = lines.find((l) => l.startsWith("PEER"))!;
    expect(head.split(/\s+/)).toEqual(expect.arrayContaining(["PEER▼", "MESH", "IP", "STATE", "HANDSHAKE", "RX", "TX", "RTT"]));
    expect(lines.find((l) => l.includes("node_zulu"))).toMatch(/2\.5ms$/);
    // Narrower still: whole columns go by priority (host, endpoint, RTT first), none is cut.
    const narrow = frame(base([{ type: "resize", columns: 48, rows: 24 }])).split("\n");
    for (const l of narrow) expect(l.length).toBeLessThanOrEqual(48);
    expect(narrow.find((l) => l.startsWith("PEER"))!.split(/\s+/)).toEqual(["PEER▼", "MESH", "IP", "STATE", "HANDSHAKE", "RX", "TX"]);
    const wide = frame(base([{ type: "resize", columns: 160, rows: 45 }]));
    expect(wide.split("\n").find((l) => l.startsWith("PEER"))!.split(/\s+/)).toEqual(["PEER▼", "HOST", "MESH", "IP", "STATE", "ENDPOINT", "HANDSHAKE", "RX", "TX", "RTT"]);
  });

  it("no agent: stale data greyed with the time of the last answer, no live claims; ? lists every key", () => {
    const gone = frame(base([{ type: "disconnected", error: "ECONNREFUSED" }]));
    expect(gone).toMatch(/last data from \d{2}:\d{2}:\d{2} \(2s ago\)/);
    expect(gone).not.toContain("control plane connected");
    expect(gone).not.toContain("health ok");
    const help = frame(base([{ type: "toggleHelp" }]));
    for (const k of ["q, Ctrl-C", "Tab", "s ", "/ ", "Esc", "r ", "p ", "? "]) expect(help).toContain(k);
  });

  it("events feed and firewall rules panel", () => {
    const s = base([
      { type: "event", event: create(WatchResponseSchema, { kind: "peer_up", subject: "node_zulu", detail: "first handshake", at: timestampFromMs(now) }), now },
      { type: "event", event: create(WatchResponseSchema, { kind: "drift_corrected", subject: "firewall", detail: "1 rule", at: timestampFromMs(now + 1000) }), now },
      { type: "rules", rules: [create(RenderedRuleSchema, { id: "r1", chain: "plexd-input", text: "tcp dport 22 accept", packets: 42n, bytes: 4200n })] },
      { type: "switchPanel" },
    ]);
    const rules = frame(s);
    expect(rules).toMatch(/42\s+4\.1 KiB\s+plexd-input\s+tcp dport 22 accept/);
    const events = frame(reducer(s, { type: "switchPanel" }));
    const lines = events.split("\n");
    const up = lines.findIndex((l) => /peer_up\s+node_zulu {2}first handshake/.test(l));
    const drift = lines.findIndex((l) => /drift_corrected\s+firewall {2}1 rule/.test(l));
    expect(up).toBeGreaterThan(-1);
    expect(drift).toBeGreaterThan(-1);
    expect(drift).toBeLessThan(up); // newest first
  });

  it("executions panel: running first as listed, status, exit code, age, duration, trigger", () => {
    const executions = [
      create(ExecutionSchema, { executionId: "exec_run1", action: "hooks/backup", status: "running", startedAt: timestampFromMs(now - 5000), triggeredBy: "control_plane" }),
      create(ExecutionSchema, { executionId: "local_1234", action: "system.info", status: "success", exitCode: 0, startedAt: timestampFromMs(now - 120_000), duration: "0.02s", triggeredBy: "local_emergency" }),
      create(ExecutionSchema, { executionId: "exec_to", action: "hooks/slow", status: "timeout", exitCode: -1, startedAt: timestampFromMs(now - 60_000), duration: "30.00s", triggeredBy: "control_plane" }),
    ];
    let s = base([{ type: "executions", executions }]);
    for (let i = 0; i < 4; i++) s = reducer(s, { type: "switchPanel" });
    const f = frame(s);
    expect(f).toContain("[Executions]");
    const lines = f.split("\n");
    const run = lines.findIndex((l) => /running\s+-\s+5s ago\s+-\s+control_plane\s+hooks\/backup {2}exec_run1/.test(l));
    const ok = lines.findIndex((l) => /success\s+0\s+2m ago\s+0\.02s\s+local_emergency\s+system\.info {2}local_1234/.test(l));
    expect(run, f).toBeGreaterThan(-1);
    expect(ok, f).toBeGreaterThan(run);
    expect(f).toMatch(/timeout\s+-1\s+1m ago\s+30\.00s/);
    expect(frame(reducer(base([]), { type: "switchPanel" }))).not.toContain("no executions yet");
  });

  it("bridge panel: services with state and counters, a failed one with its error, and the routes", () => {
    const bridge = create(GetBridgeStatusResponseSchema, {
      enabled: true,
      services: [
        { name: "access_routing", running: true, detail: "192.168.50.0/24 via eth1, masquerade", counters: { routes: 1n } },
        { name: "relay", running: false, error: "port 51821 in use", counters: { sessions: 0n, bytes_relayed_total: 123456n } },
      ],
      routeCount: 1,
      forwarding: ["eth1", "plexd0"],
      devices: [
        { name: "wg-s2s-1a2b3c4d", listenPort: 51823, peers: 1, lastHandshake: timestampFromMs(Date.now() - 5000), rxBytes: 4096n, txBytes: 10n },
        { name: "wg-s2s-5e6f7a8b", listenPort: 51824, peers: 1, error: "ApplyMesh failed at create_interface: boom" },
      ],
    });
    let s = base([{ type: "bridge", bridge }]);
    for (let i = 0; i < 6; i++) s = reducer(s, { type: "switchPanel" });
    const f = frame(s);
    expect(f).toContain("[Bridge]");
    expect(f).toMatch(/access_routing\s+running\s+192\.168\.50\.0\/24 via eth1, masquerade {2}routes=1/);
    expect(f).toMatch(/relay\s+FAILED\s+port 51821 in use {2}sessions=0 bytes_relayed_total=123456/);
    expect(f).toMatch(/routes\s+ok\s+1 routes, forwarding on eth1, plexd0/);
    expect(f).toMatch(/device\s+up\s+wg-s2s-1a2b3c4d on UDP 51823, 1 peer, handshake \d+s ago, rx 4\.0 KiB, tx 10 B/);
    expect(f).toMatch(/device\s+FAILED\s+wg-s2s-5e6f7a8b on UDP 51824, 1 peer: ApplyMesh failed/);
    expect(frame(reducer(s, { type: "bridge", bridge: create(GetBridgeStatusResponseSchema, { enabled: false }) }))).toContain("not a bridge (mode: node)");
  });

  it("bridge panel: the user-access clients with label, handshake and bytes", () => {
    const bridge = create(GetBridgeStatusResponseSchema, { enabled: true, services: [{ name: "user_access", running: true, detail: "wg-access on UDP 51822, 1/50 peers", counters: { peers: 1n } }] });
    const userAccess = create(ListUserAccessPeersResponseSchema, {
      enabled: true,
      interfaceName: "wg-access",
      listenPort: 51822,
      peers: [{ publicKey: "kEZigLh5cMopGh9SMwlNTnoDBTqT5gJd1V9LJnDFaAY=", label: "alice", lastHandshake: timestampFromMs(now - 7000), rxBytes: 2048n, txBytes: 512n }],
    });
    let s = base([{ type: "bridge", bridge }, { type: "userAccess", userAccess }]);
    for (let i = 0; i < 6; i++) s = reducer(s, { type: "switchPanel" });
    const f = frame(s);
    expect(f).toMatch(/USERS \(wg-access\)\s+HANDSHAKE\s+RX\s+TX\s+PUBLIC KEY/);
    expect(f).toMatch(/alice\s+7s ago\s+2\.0 KiB\s+512 B\s+kEZigLh5/);
  });

  it("no agent: says so and keeps the last known data", () => {
    const gone = frame(base([{ type: "disconnected", error: "ECONNREFUSED" }]));
    expect(gone).toContain("agent not reachable — retrying (ECONNREFUSED)");
    expect(gone).toContain("node_zulu");
    const never = frame(reducer(initialState(), { type: "disconnected", error: "ENOENT" }));
    expect(never).toContain("agent not reachable — retrying (ENOENT)");
    expect(never).toContain("no peers");
  });
});
