import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import type { LoggedRequest } from "../../mockcp/state/requestlog.js";
import { createTopology, ensureSystemUsers, makeTempDir, nsExec, ping, useHarness, until, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { joinNode, meshIp, nodeId } from "./lib/mesh.js";
import type { PlexdNode } from "./lib/node.js";
import { curlAs, ensurePeerCredAddon, writeTokenFile } from "./lib/nodeapi.js";

// The metrics pipeline end to end (docs/telemetry.md): two real agents with privhelper and
// wireguard-go in namespaces send their four metric groups to mockcp, gzip-compressed, with
// per-peer ids and an RTT measured by ICMP over the WireGuard tunnel; the delivery engine keeps
// its ring bounded through an outage and counts what it had to drop; 413 halves batches and
// 429 holds the next attempt for Retry-After. mockcp validates every point it accepts.

useHarness();

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let a: PlexdNode;
let b: PlexdNode;

const tcpPort = 9189;
const readerToken = "telemetry-reader-token-0123456789abcdef";

/** Small on purpose: an outage of a few cycles overflows it. */
const bufferSize = 12;

interface Point {
  timestamp: string;
  group: string;
  peer_id?: string;
  data: Record<string, unknown>;
}

interface PipelineJson {
  name: string;
  buffered: string;
  sent_total: string;
  dropped_overflow_total: string;
  dropped_oversize_total: string;
  dropped_rejected_total: string;
  pushed_total: string;
  last_flush_outcome: string;
  paused: string;
}

async function metricsPipeline(n: PlexdNode): Promise<PipelineJson> {
  const r = await n.plexd(["status", "-o", "json"]);
  if (r.exitCode !== 0 && r.exitCode !== 1) throw new Error(`plexd status: ${r.output}`);
  const s = JSON.parse(r.output.slice(r.output.indexOf("{"))) as { pipelines?: PipelineJson[] };
  const p = s.pipelines?.find((x) => x.name === "metrics");
  if (p === undefined) throw new Error(`no metrics pipeline in plexd status: ${r.output}`);
  return p;
}

const points = async (n: PlexdNode): Promise<Point[]> => (await cp.client.observability(nodeId(n), "metrics")).items as Point[];
const metricPosts = async (n: PlexdNode): Promise<LoggedRequest[]> => cp.client.requests({ path: `/v1/nodes/${nodeId(n)}/metrics`, method: "POST" });

beforeAll(async () => {
  users = await ensureSystemUsers();
  await ensurePeerCredAddon();
  topo = await createTopology({ nodes: ["a", "b"] });
  cp = await startCpOnHub(topo, { stun: true });
  const api = `https://${topo.hub.ip}:${cpPort}`;
  const config = {
    policy: { default: "allow" },
    observe: { interval: "5s", batch_interval: "1s", batch_max_size: 6, buffer_size: bufferSize },
    logs: { enabled: false },
    audit: { enabled: false },
  };
  const tokenDir = makeTempDir("api-tokens", { mode: 0o755 });
  const http = { enabled: true, listen: `127.0.0.1:${tcpPort}`, token_file: writeTokenFile(tokenDir, "reader", readerToken, { uid: 0, gid: users.groups.plexd }, 0o640) };
  a = await joinNode({ topo, cp, api, users, name: "a", config: { ...config, node_api: { http } } });
  b = await joinNode({ topo, cp, api, users, name: "b", config });
  try {
    await until("a reaches b over the mesh", async () => (await ping(a.ns, meshIp(b), { count: 1, timeoutMs: 3000 })).ok, 90_000);
  } catch (err) {
    console.log(`[telemetry] agent a:\n${a.agent?.output().slice(-4000) ?? ""}`);
    throw err;
  }
});

beforeEach(async () => {
  await cp.client.setOnline();
  await cp.client.clearObservabilityFailure();
});

describe("metrics", () => {
  it("mockcp receives all four groups, per-peer ids and a real RTT over WireGuard, gzip-compressed", async () => {
    await cp.client.clearObservability(nodeId(a), "metrics");
    const bId = nodeId(b);
    await until(
      "all four metric groups from a, with b's latency answered",
      async () => {
        const ps = await points(a);
        const groups = new Set(ps.map((p) => p.group));
        const lat = ps.find((p) => p.group === "peer_latency" && p.peer_id === bId && p.data.probes_received === 3);
        return groups.size === 4 && lat !== undefined;
      },
      60_000,
    );
    const ps = await points(a);
    const view = await cp.client.observability(nodeId(a), "metrics");
    expect(view.batches.every((x) => x.gzip && x.content_type === "application/json")).toBe(true);

    const node = ps.find((p) => p.group === "node_resources")!;
    expect(node.peer_id ?? undefined).toBeUndefined();
    expect(Object.keys(node.data).sort()).toEqual(
      ["cpu_percent", "disk_total_bytes", "disk_used_bytes", "load_avg_1", "load_avg_15", "load_avg_5", "memory_total_bytes", "memory_used_bytes", "network_rx_bytes", "network_tx_bytes"],
    );
    expect(node.data.memory_total_bytes as number).toBeGreaterThan(node.data.memory_used_bytes as number);
    // The namespace's own interfaces: the underlay and the tunnel carried bytes.
    expect(node.data.network_rx_bytes as number).toBeGreaterThan(0);

    // Per-peer groups: only b, under its control-plane id (the kernel knows it by key only).
    const health = ps.filter((p) => p.group === "tunnel_health");
    expect(new Set(health.map((p) => p.peer_id))).toEqual(new Set([bId]));
    const lastHealth = health.at(-1)!;
    expect(lastHealth.data).toMatchObject({ peer_id: bId, handshake_succeeded: true });
    expect(lastHealth.data.endpoint).toBe(`${topo.node("b").ip}:51820`);
    expect(lastHealth.data.rx_bytes as number).toBeGreaterThan(0);
    expect(lastHealth.data.handshake_age_seconds as number).toBeLessThanOrEqual(180);

    const lat = ps.filter((p) => p.group === "peer_latency" && p.peer_id === bId && p.data.probes_received === 3);
    const rtt = lat.at(-1)!.data.rtt_ms as number;
    console.log(`[telemetry] RTT a->b over WireGuard: ${rtt} ms`);
    expect(rtt).toBeGreaterThan(0);
    expect(rtt).toBeLessThan(1000);
    expect(lat.at(-1)!.data.probes_sent).toBe(3);

    const stats = ps.find((p) => p.group === "agent_stats")!;
    for (const k of ["uptime_seconds", "rss_bytes", "heap_used_bytes", "heap_total_bytes", "event_loop_delay_p99_ms", "sse_reconnects_total", "privhelper_errors_total"]) expect(typeof stats.data[k], k).toBe("number");
    for (const p of ["metrics", "logs", "audit"]) for (const k of ["buffered", "dropped_overflow_total", "dropped_oversize_total"]) expect(typeof stats.data[`${p}_${k}`]).toBe("number");

    // The same probe fills RTT and loss in ListPeers: plexd peers shows them.
    const peers = await a.plexd(["peers", "-o", "json"]);
    const listed = (JSON.parse(peers.output.slice(peers.output.indexOf("{"))) as { peers: { peer_id: string; rtt_ms: number; loss_percent?: number }[] }).peers.find((p) => p.peer_id === bId)!;
    expect(listed.rtt_ms).toBeGreaterThan(0);
    expect(listed.loss_percent).toBe(0);
    const text = await a.plexd(["peers"]);
    expect(text.output).toMatch(/LOSS/);
    expect(text.output).toMatch(/\d+\.\d ms\s+0%/);
  });

  it("serves the same figures in Prometheus format: plexd metrics, GET /metrics on the socket and on loopback TCP with the reader token", async () => {
    const bId = nodeId(b);
    await until("a has probed b", async () => (await points(a)).some((p) => p.group === "peer_latency" && p.peer_id === bId), 60_000);
    const cli = await a.plexd(["metrics"]);
    expect(cli.exitCode, cli.output).toBe(0);
    expect(cli.output).toMatch(/# TYPE plexd_node_cpu_percent gauge/);
    expect(cli.output).toContain(`plexd_peer_handshake_ok{peer_id="${bId}"} 1`);
    expect(cli.output).toMatch(new RegExp(`plexd_peer_rtt_milliseconds\\{peer_id="${bId}"\\} [0-9.]+`));
    expect(cli.output).toMatch(/plexd_telemetry_sent_total\{pipeline="metrics"\} [1-9]/);

    const sock = await curlAs(a, users, "reader", "/metrics");
    expect(sock.status).toBe(200);
    expect(sock.headers).toContain("content-type: text/plain; version=0.0.4");
    expect(sock.text).toContain("plexd_telemetry_buffered{pipeline=\"metrics\"}");
    // A user outside group plexd is not a reader.
    expect((await curlAs(a, users, "outsider", "/metrics")).status).not.toBe(200);

    const tcp = (token?: string) =>
      nsExec(a.ns, ["curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}", ...(token === undefined ? [] : ["-H", `Authorization: Bearer ${token}`]), `http://127.0.0.1:${tcpPort}/metrics`], { reject: false });
    const ok = await tcp(readerToken);
    expect(ok.stdout.split("\n").at(-1)).toBe("200");
    expect(ok.stdout).toContain("plexd_agent_rss_bytes");
    expect((await tcp()).stdout.split("\n").at(-1)).toBe("401");
    expect((await tcp("wrong")).stdout.split("\n").at(-1)).toBe("401");
  });

  it("an outage keeps the ring bounded, counts the overflow exactly and delivers the rest after", async () => {
    await until("a's metrics buffer drained", async () => (await metricsPipeline(a)).buffered === "0", 30_000);
    const before = await metricsPipeline(a);
    await cp.client.clearObservability(nodeId(a), "metrics");
    await cp.client.setOffline();
    const outageStart = Date.now();
    let most = 0;
    // Six collection cycles of four points: twice the ring.
    while (Date.now() - outageStart < 32_000) {
      const p = await metricsPipeline(a);
      most = Math.max(most, Number(p.buffered));
      await new Promise((r) => setTimeout(r, 2000));
    }
    const during = await metricsPipeline(a);
    expect(most).toBeLessThanOrEqual(bufferSize);
    expect(Number(during.buffered)).toBe(bufferSize);
    expect(Number(during.dropped_overflow_total)).toBeGreaterThan(Number(before.dropped_overflow_total));
    expect(during.last_flush_outcome).toMatch(/^http 503/);
    // Nothing got through, so the overflow is exactly what did not fit: what was buffered plus
    // what was collected since, less the ring.
    const d = (k: keyof PipelineJson): number => Number(during[k]) - Number(before[k]);
    expect(d("sent_total")).toBe(0);
    expect(d("dropped_overflow_total")).toBe(Number(before.buffered) + d("pushed_total") - bufferSize);
    await cp.client.setOnline();
    await until("the buffered points delivered", async () => (await metricsPipeline(a)).buffered === "0", 30_000);
    const after = await metricsPipeline(a);
    const received = await points(a);
    const later = await metricsPipeline(a);
    // Every point collected is sent, dropped or buffered; the only loss is ring overflow.
    const pushed = Number(after.pushed_total) - Number(before.pushed_total);
    const sent = Number(after.sent_total) - Number(before.sent_total);
    const dropped = Number(after.dropped_overflow_total) - Number(before.dropped_overflow_total);
    expect(sent + dropped + Number(after.buffered)).toBe(pushed + Number(before.buffered));
    expect(Number(after.dropped_oversize_total) + Number(after.dropped_rejected_total)).toBe(0);
    // mockcp holds what the agent counted as sent since the outage began (read between two
    // snapshots: a batch may be on its way).
    expect(received.length).toBeGreaterThanOrEqual(sent);
    expect(received.length).toBeLessThanOrEqual(Number(later.sent_total) - Number(before.sent_total));
    // Newest data wins: the ring's content from the outage arrived after it.
    const fromOutage = received.filter((p) => Date.parse(p.timestamp) >= outageStart);
    expect(fromOutage.length).toBeGreaterThanOrEqual(bufferSize);
    console.log(`[telemetry] outage: ${pushed} points collected, ${dropped} dropped by overflow, ${sent} delivered, ring peak ${most}/${bufferSize}`);
  });

  it("413 halves the batch; a single point still too large is dropped and counted", async () => {
    await until("a's metrics buffer drained", async () => (await metricsPipeline(a)).buffered === "0", 30_000);
    const sample = await points(a);
    const size = (g: string): number => Math.max(...sample.filter((p) => p.group === g).map((p) => JSON.stringify(p).length + 2));
    // Room for any one point but agent_stats; two points together never fit.
    const maxBytes = Math.max(size("node_resources"), size("tunnel_health"), size("peer_latency")) + 2;
    expect(size("agent_stats")).toBeGreaterThan(maxBytes);
    expect(size("node_resources") + size("tunnel_health")).toBeGreaterThan(maxBytes);
    const before = await metricsPipeline(a);
    await cp.client.clearObservability(nodeId(a), "metrics");
    await cp.client.clearRequests();
    await cp.client.setObservabilityFailure({ mode: "too_large", max_bytes: maxBytes, kinds: ["metrics"], node_id: nodeId(a) });
    await until("an agent_stats point dropped as oversize", async () => Number((await metricsPipeline(a)).dropped_oversize_total) > Number(before.dropped_oversize_total), 40_000);
    await until("node_resources delivered alone", async () => (await points(a)).some((p) => p.group === "node_resources"), 20_000);
    const posts = await metricPosts(a);
    const counts = posts.map((r) => ({ status: r.status, n: Array.isArray(r.body) ? r.body.length : -1 }));
    // A refused batch of n is followed by one of ceil(n/2).
    const halved = counts.some((c, i) => c.status === 413 && c.n > 1 && counts[i + 1]?.n === Math.ceil(c.n / 2));
    expect(halved, JSON.stringify(counts)).toBe(true);
    const view = await cp.client.observability(nodeId(a), "metrics");
    expect(view.counts.rejected_413).toBeGreaterThan(0);
    expect(view.batches.every((x) => x.decoded_bytes <= maxBytes)).toBe(true);
    expect(view.items.some((p) => (p as Point).group === "agent_stats")).toBe(false);
    const after = await metricsPipeline(a);
    expect(Number(after.dropped_overflow_total)).toBe(Number(before.dropped_overflow_total));
  });

  it("429 holds the next attempt for Retry-After, then delivers", async () => {
    await until("a's metrics buffer drained", async () => (await metricsPipeline(a)).buffered === "0", 30_000);
    await cp.client.clearRequests();
    await cp.client.setObservabilityFailure({ mode: "rate_limit", retry_after: 4, count: 1, kinds: ["metrics"], node_id: nodeId(a) });
    await until("a 429 and a later 202", async () => {
      const posts = await metricPosts(a);
      const i = posts.findIndex((r) => r.status === 429);
      return i >= 0 && posts.slice(i + 1).some((r) => r.status === 202);
    }, 40_000);
    const posts = await metricPosts(a);
    const i = posts.findIndex((r) => r.status === 429);
    const next = posts[i + 1]!;
    const waited = Date.parse(next.time) - Date.parse(posts[i]!.time);
    console.log(`[telemetry] 429 with Retry-After 4: next attempt ${waited} ms later`);
    expect(waited).toBeGreaterThanOrEqual(3900);
    expect(waited).toBeLessThan(15_000);
    expect(posts[i]!.headers["content-encoding"]).toBe("gzip");
  });
});
