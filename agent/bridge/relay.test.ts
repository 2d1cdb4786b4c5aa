import { createSocket } from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import type { Logger } from "../util/log.js";
import { RelayService } from "./relay.js";
import type { BridgeInput } from "./service.js";

// The relay service over a real engine on loopback: desired state → sessions, upsert by id,
// limits with their reasons, heartbeat and capability keys.

const services: RelayService[] = [];
afterEach(async () => {
  for (const s of services.splice(0)) await s.stop();
});

function recorder() {
  const lines: { level: string; obj: Record<string, unknown>; msg: string }[] = [];
  const make = (): Logger => {
    const at = (level: string) => (obj: Record<string, unknown>, msg: string) => void lines.push({ level, obj, msg });
    return { info: at("info"), warn: at("warn"), debug: at("debug"), error: at("error"), child: () => make() } as unknown as Logger;
  };
  return { log: make(), lines };
}

async function freePort(): Promise<number> {
  const s = createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const expires = new Date(Date.now() + 600_000).toISOString();
const session = (id: string, a: string, b: string, extra: Record<string, unknown> = {}) => ({
  session_id: id,
  peer_a_id: "n_a",
  peer_b_id: "n_b",
  peer_a_endpoint: a,
  peer_b_endpoint: b,
  expires_at: expires,
  ...extra,
});

async function setup(maxSessions = 2) {
  const port = await freePort();
  const { log, lines } = recorder();
  const svc = new RelayService({ log });
  services.push(svc);
  const input = (sessions?: unknown[], enabled = true): BridgeInput =>
    ({
      config: { bridge: { relay: { enabled, listen_port: port, max_sessions: maxSessions, session_ttl: { text: "5m", ms: 300_000 } } } },
      desired: sessions === undefined ? {} : { relay_config: { sessions } },
    }) as unknown as BridgeInput;
  return { svc, input, lines, port };
}

describe("RelayService", () => {
  it("converges to the desired list: add, same content kept, new content replaced, absent block leaves it alone, removal revokes", async () => {
    const { svc, input, lines, port } = await setup();
    expect(svc.wanted(input())).toBe(true);
    expect(svc.wanted(input([], false))).toBe(false);
    await svc.apply(input([session("s1", "192.0.2.1:1000", "192.0.2.2:2000")]));
    expect(svc.status()).toMatchObject({ running: true, counters: { sessions: 1, max_sessions: 2 }, heartbeat: { relay_enabled: true, active_relay_sessions: 1 }, capabilities: { relay: "true", relay_listen_port: String(port) } });
    await svc.apply(input([session("s1", "192.0.2.1:1000", "192.0.2.2:2000")]));
    expect(lines.filter((l) => l.msg === "relay session added")).toHaveLength(1);
    await svc.apply(input([session("s1", "192.0.2.1:1000", "192.0.2.3:2000")]));
    expect(lines.filter((l) => l.msg === "relay session added")).toHaveLength(2);
    expect(svc.status().sessions[0]?.peer_b_address).toBe("192.0.2.3:2000");
    await svc.apply(input(undefined));
    expect(svc.status().counters.sessions).toBe(1);
    await svc.apply(input([]));
    expect(svc.status().counters).toMatchObject({ sessions: 0, sessions_revoked_total: 1 });
    expect(lines.some((l) => l.msg === "relay session revoked" && l.obj.session_id === "s1")).toBe(true);
  });

  it("refuses beyond max_sessions, unresolvable and bound endpoints with the reason; skips invalid and expired items", async () => {
    const { svc, input, lines } = await setup(2);
    const list = [
      session("s1", "192.0.2.1:1000", "192.0.2.2:2000"),
      { session_id: "bad" },
      session("s2", "192.0.2.1:1000", "192.0.2.9:9"),
      session("s3", "no-such-host.invalid:1", "192.0.2.2:3"),
      session("s4", "192.0.2.4:4", "192.0.2.5:5"),
      session("s5", "192.0.2.6:6", "192.0.2.7:7"),
      session("old", "192.0.2.8:8", "192.0.2.9:8", { expires_at: new Date(Date.now() - 1000).toISOString() }),
    ];
    await svc.apply(input(list));
    const st = svc.status();
    expect(st.counters.sessions).toBe(2);
    expect(st.rejected).toEqual([
      { session_id: "s2", reason: `endpoint 192.0.2.1:1000 is already bound to session s1 on port ${st.detail.replace(/\D/g, "")}` },
      { session_id: "s3", reason: "peer_a_endpoint no-such-host.invalid:1 does not resolve" },
      { session_id: "s5", reason: "max_sessions (2) reached" },
    ]);
    expect(st.counters.rejections_total).toBe(3);
    expect(lines.filter((l) => l.msg === "relay session invalid; skipped")).toHaveLength(1);
    // The same list again: nothing logged twice.
    await svc.apply(input(list));
    expect(lines.filter((l) => l.msg === "relay session invalid; skipped")).toHaveLength(1);
    expect(lines.filter((l) => l.msg === "relay session rejected")).toHaveLength(3);
  });

  it("reports itself off when disabled or stopped", async () => {
    const { svc, input } = await setup();
    await svc.apply(input([], false));
    expect(svc.status()).toMatchObject({ running: false, detail: "disabled", heartbeat: { relay_enabled: false, active_relay_sessions: 0 }, capabilities: {} });
  });
});
