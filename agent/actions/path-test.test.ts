import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../util/log.js";
import { PathTestResponder, RateCap, runPathTest } from "./path-test.js";

const log = createLogger({ name: "test", level: "silent" });
let responder: PathTestResponder | undefined;
afterEach(() => responder?.close());

async function start(pps: number, port: number): Promise<void> {
  responder = new PathTestResponder(() => ({ maxPacketsPerSecond: pps, maxBytesPerSecond: 10_000_000, maxDurationMs: 5000 }), log);
  await responder.listen("127.0.0.1", port);
}
const run = (port: number, mode: "udp_echo" | "throughput", rate: number) => runPathTest({ meshIp: "127.0.0.1", peerIp: "127.0.0.1", port, mode, durationMs: 1000, rate, size: 300, signal: new AbortController().signal });

describe("path test", () => {
  it("echo: RTT, jitter, no loss within the caps", async () => {
    await start(1000, 51971);
    const r = await run(51971, "udp_echo", 100);
    expect(r.sent).toBeGreaterThanOrEqual(90);
    expect(r).toMatchObject({ mode: "udp_echo", received: r.sent, loss_percent: 0 });
    expect(r.rtt_ms!.min).toBeGreaterThan(0);
    expect(r.rtt_ms!.min).toBeLessThanOrEqual(r.rtt_ms!.avg);
    expect(r.rtt_ms!.avg).toBeLessThanOrEqual(r.rtt_ms!.p99);
    expect(r.goodput_bps).toBeGreaterThan(0);
  });

  it("the responder's packet cap holds whatever the tester sends", async () => {
    await start(50, 51972);
    const r = await run(51972, "udp_echo", 400);
    // One second of burst plus one second of refill at most.
    expect(r.sent).toBeGreaterThan(350);
    expect(r.received).toBeLessThanOrEqual(101);
    expect(r.loss_percent).toBeGreaterThan(70);
    const t = await run(51972, "throughput", 400);
    expect(t.received).toBeLessThanOrEqual(101);
  });

  it("throughput: the peer's count of what arrived", async () => {
    await start(1000, 51973);
    const r = await run(51973, "throughput", 200);
    expect(r).toMatchObject({ mode: "throughput", received: r.sent, loss_percent: 0 });
    expect(r.goodput_bps).toBeGreaterThan(200 * 300 * 8 * 0.8);
  });

  it("fails clearly when nobody answers", async () => {
    await expect(run(51974, "udp_echo", 10)).rejects.toThrow(/no opened from 127.0.0.1/);
  });

  it("the rate cap refills with time and allows one second of burst", () => {
    let t = 0;
    const cap = new RateCap(10, 1_000_000, () => t);
    let ok = 0;
    for (let i = 0; i < 100; i++) if (cap.take(100)) ok++;
    expect(ok).toBe(10);
    t = 500;
    ok = 0;
    for (let i = 0; i < 100; i++) if (cap.take(100)) ok++;
    expect(ok).toBe(5);
    expect(new RateCap(1000, 1000, () => t).take(1001)).toBe(false);
  });
});
