import { createCipheriv } from "node:crypto";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PlexdError } from "../../../proto/lib/errors.js";
import { FakeClock } from "../../util/clock.js";
import { createLogger } from "../../util/log.js";
import { NodeState, maxReportEntries, type CpRequestFn, type NodeStateOptions } from "./node-state.js";

const log = createLogger({ name: "test", level: "silent" });
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "plexd-nodestate-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Recorded {
  method: string;
  path: string;
  body: unknown;
}

function recordingCp(answer: (r: Recorded, n: number) => { status: number; body: unknown } | Error): { fn: CpRequestFn; calls: Recorded[] } {
  const calls: Recorded[] = [];
  const fn: CpRequestFn = async (method, path, body) => {
    const r = { method, path, body: structuredClone(body) };
    calls.push(r);
    const a = answer(r, calls.length);
    if (a instanceof Error) throw a;
    return a;
  };
  return { fn, calls };
}

async function open(extra: Partial<NodeStateOptions> = {}): Promise<NodeState> {
  return NodeState.open({ dataDir: dir, nodeId: () => "node_1", cpRequest: async () => ({ status: 200, body: {} }), log, ...extra });
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return PlexdError.from(err).code;
  }
}

describe("NodeState downstream cache", () => {
  it("replaces present categories, drops invalid data keys, persists and survives a restart", async () => {
    const s = await open();
    const changes: unknown[] = [];
    s.subscribe((c) => changes.push(c));
    await s.applyDownstream({
      metadata: { region: "eu", tier: "gold" },
      data: [
        { key: "cfg", content_type: "application/json", payload: { a: 1 }, version: 2, updated_at: "2025-01-01T00:00:00Z" },
        { key: "../evil", content_type: "text/plain", payload: "x", version: 1, updated_at: "2025-01-01T00:00:00Z" },
      ],
      secretRefs: [{ key: "tls", version: 3 }],
    });
    expect(changes).toEqual([
      { kind: "metadata", keys: ["region", "tier"] },
      { kind: "data", keys: ["cfg"] },
      { kind: "secrets", keys: ["tls"] },
    ]);
    // Metadata absent: left alone. Same data again: no change event.
    await s.applyDownstream({ data: [{ key: "cfg", content_type: "application/json", payload: { a: 1 }, version: 2, updated_at: "2025-01-01T00:00:00Z" }] });
    expect(changes).toHaveLength(3);

    const again = await open();
    expect(again.metadata()).toEqual({ region: "eu", tier: "gold" });
    expect(again.listData()).toEqual([{ key: "cfg", version: 2, content_type: "application/json" }]);
    expect(again.getData("cfg").payload).toEqual({ a: 1 });
    expect(again.listSecrets()).toEqual([{ key: "tls", version: 3 }]);
    expect((await stat(join(dir, "state", "data", "cfg.json"))).mode & 0o777).toBe(0o600);

    await again.applyDownstream({ data: [] });
    expect(await codeOf(Promise.resolve().then(() => again.getData("cfg")))).toBe("not_found");
    await expect(stat(join(dir, "state", "data", "cfg.json"))).rejects.toThrow();
  });

  it("metadata lookups: not_found for unknown and inherited names", async () => {
    const s = await open();
    await s.applyDownstream({ metadata: { a: "1" } });
    expect(s.metadataValue("a")).toBe("1");
    expect(await codeOf(Promise.resolve().then(() => s.metadataValue("b")))).toBe("not_found");
    expect(await codeOf(Promise.resolve().then(() => s.metadataValue("toString")))).toBe("not_found");
  });
});

describe("NodeState reports", () => {
  it("versions, If-Match, validation and limits", async () => {
    const s = await open();
    const e1 = await s.putReport({ key: "app-health", contentType: "application/json", payload: { ok: true } });
    expect(e1.version).toBe(1);
    expect((await s.putReport({ key: "app-health", contentType: "application/json", payload: { ok: false }, ifMatch: 1 })).version).toBe(2);
    expect(await codeOf(s.putReport({ key: "app-health", contentType: "application/json", payload: 1, ifMatch: 1 }))).toBe("aborted");
    expect(await codeOf(s.putReport({ key: "app-health", contentType: "application/json", payload: 1, ifMatch: 0 }))).toBe("aborted");
    expect(await codeOf(s.putReport({ key: "bad key", contentType: "application/json", payload: 1 }))).toBe("invalid_argument");
    expect(await codeOf(s.putReport({ key: "k", contentType: "", payload: 1 }))).toBe("invalid_argument");
    expect(await codeOf(s.putReport({ key: "k", contentType: "x".repeat(256), payload: 1 }))).toBe("invalid_argument");
    expect(await codeOf(s.putReport({ key: "k", contentType: "application/json", payload: undefined }))).toBe("invalid_argument");
    expect(await codeOf(s.putReport({ key: "k", contentType: "application/json", payload: "x".repeat(1024 * 1024) }))).toBe("resource_exhausted");
    expect(await codeOf(s.deleteReport({ key: "app-health", ifMatch: 1 }))).toBe("aborted");
    expect(await codeOf(s.deleteReport({ key: "nope" }))).toBe("not_found");
    await s.deleteReport({ key: "app-health", ifMatch: 2 });
    expect(s.listReports()).toEqual([]);
  });

  it(`refuses entry ${maxReportEntries + 1} but still updates existing ones`, async () => {
    const s = await open();
    for (let i = 0; i < maxReportEntries; i++) await s.putReport({ key: `k${i}`, contentType: "application/json", payload: i });
    expect(await codeOf(s.putReport({ key: "one-more", contentType: "application/json", payload: 1 }))).toBe("resource_exhausted");
    expect((await s.putReport({ key: "k0", contentType: "application/json", payload: 2 })).version).toBe(2);
  }, 60_000);

  it("persists entries and the pending set across a restart", async () => {
    const s = await open();
    await s.putReport({ key: "a", contentType: "application/json", payload: [1, 2] });
    await s.putReport({ key: "b", contentType: "text/plain", payload: "hi" });
    await s.deleteReport({ key: "b" });
    const pending = JSON.parse(await readFile(join(dir, "state", "report-pending.json"), "utf8")) as unknown;
    expect(pending).toEqual({ pending: ["a", "b"], conflict: [] });
    const again = await open();
    expect(again.listReports()).toEqual([{ key: "a", version: 1, content_type: "application/json", sync_state: "pending" }]);
    expect(again.syncStatus().pending).toEqual(["a", "b"]);
  });
});

describe("report sync", () => {
  it("debounces, sends entries and deletions once, and clears pending on 2xx", async () => {
    const clock = new FakeClock();
    const cp = recordingCp(() => ({ status: 200, body: {} }));
    const s = await open({ clock, cpRequest: cp.fn, reportDebounceMs: 5000 });
    await s.putReport({ key: "gone", contentType: "application/json", payload: 0 });
    await s.syncOnce();
    cp.calls.length = 0;
    const ac = new AbortController();
    const loop = s.runReportSync(ac.signal);
    await s.putReport({ key: "a", contentType: "application/json", payload: 1 });
    await clock.waitForSleepers(1);
    await clock.advance(3000);
    await s.putReport({ key: "a", contentType: "application/json", payload: 2 });
    await s.deleteReport({ key: "gone" });
    await clock.advance(4000); // 7 s after the first write, 4 s after the last: not yet
    expect(cp.calls).toHaveLength(0);
    await clock.advance(1500);
    await s.flush();
    expect(cp.calls).toHaveLength(1);
    expect(cp.calls[0]!.path).toBe("/v1/nodes/node_1/report");
    const body = cp.calls[0]!.body as { entries: { key: string; version: number; payload: unknown }[]; deleted: string[] };
    expect(body.entries.map((e) => [e.key, e.version, e.payload])).toEqual([["a", 2, 2]]);
    expect(body.deleted).toEqual(["gone"]);
    expect(s.syncStatus().pending).toEqual([]);
    expect(s.listReports()[0]?.sync_state).toBe("synced");
    ac.abort();
    await loop;
  });

  it("keeps the batch on failure and retries at the next debounce tick", async () => {
    const clock = new FakeClock();
    const cp = recordingCp((_r, n) => (n === 1 ? new Error("ECONNREFUSED") : n === 2 ? { status: 503, body: {} } : { status: 200, body: {} }));
    const s = await open({ clock, cpRequest: cp.fn, reportDebounceMs: 5000 });
    const ac = new AbortController();
    const loop = s.runReportSync(ac.signal);
    await s.putReport({ key: "a", contentType: "application/json", payload: 1 });
    await clock.waitForSleepers(1);
    await clock.advance(5000);
    expect(cp.calls).toHaveLength(1);
    expect(s.syncStatus().pending).toEqual(["a"]);
    await clock.advance(5000);
    expect(cp.calls).toHaveLength(2);
    await clock.advance(5000);
    expect(cp.calls).toHaveLength(3);
    await s.flush();
    expect(s.syncStatus().pending).toEqual([]);
    ac.abort();
    await loop;
  });

  it("409: bumps to current_version + 1 and resends once; a second conflict parks the key until written again", async () => {
    let conflictsLeft = 1;
    const cp = recordingCp(() => {
      if (conflictsLeft-- > 0) return { status: 409, body: { error: "version_conflict", conflicts: [{ key: "a", current_version: 14 }] } };
      return { status: 200, body: {} };
    });
    const s = await open({ cpRequest: cp.fn });
    await s.putReport({ key: "a", contentType: "application/json", payload: 1 });
    await s.putReport({ key: "b", contentType: "application/json", payload: 1 });
    expect(await s.syncOnce()).toBe(true);
    expect(cp.calls).toHaveLength(2);
    const resent = cp.calls[1]!.body as { entries: { key: string; version: number }[] };
    expect(resent.entries.map((e) => [e.key, e.version])).toEqual([["a", 15], ["b", 1]]);
    expect(s.getReport("a").version).toBe(15);

    conflictsLeft = 2;
    cp.calls.length = 0;
    await s.putReport({ key: "a", contentType: "application/json", payload: 2 });
    expect(await s.syncOnce()).toBe(false);
    expect(cp.calls).toHaveLength(2);
    expect(s.syncStatus()).toEqual({ pending: ["a"], conflict: ["a"] });
    expect(s.listReports().find((e) => e.key === "a")?.sync_state).toBe("conflict");
    // Parked: nothing is sent until a local write.
    cp.calls.length = 0;
    expect(await s.syncOnce()).toBe(true);
    expect(cp.calls).toHaveLength(0);
    await s.putReport({ key: "a", contentType: "application/json", payload: 3 });
    expect(s.syncStatus().conflict).toEqual([]);
    expect(await s.syncOnce()).toBe(true);
    expect(cp.calls).toHaveLength(1);
    expect(s.syncStatus().pending).toEqual([]);
  });

  it("a write during the upload keeps the key pending", async () => {
    const holder: { s?: NodeState } = {};
    const cp = recordingCp(() => ({ status: 200, body: {} }));
    const slow: CpRequestFn = async (m, p, b) => {
      await holder.s!.putReport({ key: "a", contentType: "application/json", payload: "newer" });
      return cp.fn(m, p, b);
    };
    const s = (holder.s = await open({ cpRequest: slow }));
    await s.putReport({ key: "a", contentType: "application/json", payload: "old" });
    expect(await s.syncOnce()).toBe(true);
    expect(s.syncStatus().pending).toEqual(["a"]);
  });
});

describe("GetSecret", () => {
  const nsk = Buffer.from([...Array(32).keys()]);
  function encrypt(value: string, nonce = Buffer.from([...Array(12).keys()])): { ciphertext: string; nonce: string } {
    const c = createCipheriv("aes-256-gcm", nsk, nonce);
    return { ciphertext: Buffer.concat([c.update(value, "utf8"), c.final(), c.getAuthTag()]).toString("base64"), nonce: nonce.toString("base64") };
  }

  it("fetches every time, decrypts with the NSK from data_dir, and never writes the value", async () => {
    await writeFile(join(dir, "node_secret_key"), nsk.toString("base64") + "\n");
    const cp = recordingCp(() => ({ status: 200, body: { key: "tls", version: 4, ...encrypt("s3cret-value") } }));
    const s = await open({ cpRequest: cp.fn });
    expect(await s.getSecret("tls")).toEqual({ key: "tls", value: "s3cret-value", version: 4 });
    expect(await s.getSecret("tls")).toEqual({ key: "tls", value: "s3cret-value", version: 4 });
    expect(cp.calls.map((c) => `${c.method} ${c.path}`)).toEqual(["GET /v1/nodes/node_1/secrets/tls", "GET /v1/nodes/node_1/secrets/tls"]);
    await s.flush();
    const { readdir } = await import("node:fs/promises");
    const files = (await readdir(dir, { recursive: true, withFileTypes: true })).filter((d) => d.isFile());
    for (const f of files) expect(await readFile(join(f.parentPath, f.name), "utf8")).not.toContain("s3cret-value");
    expect(files.length).toBeGreaterThan(0);
  });

  it("maps control-plane answers to node API codes (docs/node-api.md)", async () => {
    const cases: [() => { status: number; body: unknown } | Error, string, string?][] = [
      [() => ({ status: 404, body: {} }), "not_found"],
      [() => ({ status: 403, body: {} }), "permission_denied"],
      [() => ({ status: 401, body: {} }), "unavailable", "control plane unavailable"],
      [() => ({ status: 502, body: {} }), "unavailable", "control plane unavailable"],
      [() => new Error("connect ECONNREFUSED"), "unavailable", "control plane unavailable"],
      [() => ({ status: 200, body: { key: "tls", version: 1, ...encrypt("v"), ciphertext: "AAAA" } }), "internal", "decryption failed"],
      [() => ({ status: 200, body: { key: "tls", version: 1, ...encrypt("v", Buffer.alloc(11)) } }), "internal", "decryption failed"],
    ];
    for (const [answer, code, message] of cases) {
      const s = await open({ cpRequest: recordingCp(answer).fn, nsk: async () => nsk });
      try {
        await s.getSecret("tls");
        expect.unreachable(`expected ${code}`);
      } catch (err) {
        const e = PlexdError.from(err);
        expect(e.code).toBe(code);
        if (message !== undefined) expect(e.message).toBe(message);
      }
    }
    const s = await open({ nsk: async () => nsk.subarray(0, 31), cpRequest: recordingCp(() => ({ status: 200, body: { key: "k", version: 1, ...encrypt("v") } })).fn });
    expect(await codeOf(s.getSecret("k"))).toBe("internal");
    expect(await codeOf(s.getSecret("../x"))).toBe("invalid_argument");
  });
});
