// The fence around the agent's persistence: after `plexd deregister --purge` (or a plain
// deregister moving the identity aside) beside a running agent, nothing of plexd may reappear
// in data_dir — neither files nor the directories they live in — also when a write races
// with the purge.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { moveIdentityAside, purgeDataDir } from "../identity/store.js";
import { writeFileAtomic } from "../util/atomic.js";
import { DataDirFence } from "./data-dir-fence.js";
import { DesiredStateStore } from "./desired.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "plexd-fence-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const events = () => join(dir, "cache", "events.json");
const withIdentity = (): void => writeFileSync(join(dir, "identity.json"), '{"node_id":"n_1","mesh_ip":"10.100.0.1"}\n');

describe("DataDirFence", () => {
  it("writes freely until armed: an agent still registering has no identity yet", async () => {
    const fence = new DataDirFence(dir);
    await fence.writeJsonAtomic(events(), { last: "e1" });
    expect(existsSync(events())).toBe(true);
    expect(fence.identityRemoved).toBe(false);
  });

  it("once armed, writes while the identity is there and none after it is gone, recreating no directory", async () => {
    withIdentity();
    const fence = new DataDirFence(dir);
    fence.arm();
    await fence.writeJsonAtomic(events(), { last: "e1" });
    expect(existsSync(events())).toBe(true);

    await purgeDataDir(dir);
    await fence.writeJsonAtomic(events(), { last: "e2" });
    await fence.appendDurable(join(dir, "cache", "desired.journal"), "{}\n");
    await fence.writeFileAtomic(join(dir, "signing_keys.json"), "{}\n");
    expect(readdirSync(dir)).toEqual([]);
    expect(fence.identityRemoved).toBe(true);
    expect(fence.signal.aborted).toBe(true);
  });

  it("an append log opened before the purge never brings its file back; none is created after", async () => {
    withIdentity();
    const fence = new DataDirFence(dir);
    fence.arm();
    const journal = join(dir, "cache", "events.journal");
    const log = (await fence.createAppendLog(journal, "{}\n", 4096))!;
    await log.append('{"i":"e1"}\n');
    await purgeDataDir(dir);
    await log.append('{"i":"e2"}\n');
    await log.close();
    expect(await fence.createAppendLog(journal, "{}\n", 4096)).toBeUndefined();
    expect(readdirSync(dir)).toEqual([]);
  });

  it("a deregister without --purge (identity moved aside) stops the writes too", async () => {
    withIdentity();
    const fence = new DataDirFence(dir);
    fence.arm();
    await moveIdentityAside(dir, "deregistered");
    await fence.writeJsonAtomic(events(), { last: "e2" });
    expect(existsSync(join(dir, "cache"))).toBe(false);
    expect(fence.identityRemoved).toBe(true);
  });

  it("takes back a write that raced with the purge, and the directories it created", async () => {
    withIdentity();
    const fence = new DataDirFence(dir);
    fence.arm();
    // The purge lands between the fence's first look and the write itself.
    await fence.guardedWrite(join(dir, "state", "report", "k.json"), async () => {
      await purgeDataDir(dir);
      await writeFileAtomic(join(dir, "state", "report", "k.json"), "{}\n");
    });
    expect(readdirSync(dir)).toEqual([]);
  });

  it("a write that failed because the purge emptied data_dir under it is no error", async () => {
    withIdentity();
    mkdirSync(join(dir, "cache"));
    const fence = new DataDirFence(dir);
    fence.arm();
    await expect(
      fence.guardedWrite(events(), async () => {
        await purgeDataDir(dir);
        throw Object.assign(new Error("ENOENT: rename"), { code: "ENOENT" });
      }),
    ).resolves.toBeUndefined();
    // The same failure with the identity in place is the writer's to handle.
    const other = new DataDirFence(dir);
    withIdentity();
    other.arm();
    await expect(other.guardedWrite(events(), () => Promise.reject(new Error("disk full")))).rejects.toThrow("disk full");
  });

  it("the agent's own re-registration may replace the identity without tripping the fence", async () => {
    withIdentity();
    const fence = new DataDirFence(dir);
    fence.arm();
    await fence.replacing(async () => {
      unlinkSync(join(dir, "identity.json"));
      await fence.writeJsonAtomic(events(), { during: true });
      withIdentity();
    });
    expect(fence.identityRemoved).toBe(false);
    expect(existsSync(events())).toBe(true);
  });

  it("watch() notices the removal without any write and aborts the signal", async () => {
    withIdentity();
    const fence = new DataDirFence(dir);
    fence.arm();
    const stop = new AbortController();
    let ticks = 0;
    const watching = fence.watch(stop.signal, async () => {
      if (++ticks === 3) unlinkSync(join(dir, "identity.json"));
      await Promise.resolve();
    });
    await watching;
    expect(ticks).toBe(3);
    expect(fence.signal.aborted).toBe(true);
  });

  it("no leftovers when writers run flat out while the purge happens", async () => {
    for (let round = 0; round < 20; round++) {
      mkdirSync(dir, { recursive: true });
      withIdentity();
      const fence = new DataDirFence(dir);
      fence.arm();
      const writer = async (path: string): Promise<void> => {
        for (let i = 0; !fence.identityRemoved && i < 10_000; i++) await fence.writeJsonAtomic(path, { i });
      };
      const writers = [writer(events()), writer(join(dir, "cache", "desired.json")), writer(join(dir, "state", "report", "a.json")), writer(join(dir, "signing_keys.json"))];
      await new Promise((r) => setTimeout(r, 5 + round));
      await purgeDataDir(dir);
      await Promise.all(writers);
      expect({ round, left: readdirSync(dir) }).toEqual({ round, left: [] });
    }
  });
});

describe("DesiredStateStore behind the fence", () => {
  it("persists nothing once the identity is gone, flush included", async () => {
    withIdentity();
    const fence = new DataDirFence(dir);
    fence.arm();
    const store = await DesiredStateStore.open(dir, fence);
    store.update((s) => ((s.metadata = { env: "a" }), ["metadata"]));
    await store.flush();
    expect(existsSync(join(dir, "cache", "desired.json"))).toBe(true);
    await purgeDataDir(dir);
    store.update((s) => ((s.metadata = { env: "b" }), ["metadata"]));
    await store.flush();
    expect(readdirSync(dir)).toEqual([]);
  });
});
