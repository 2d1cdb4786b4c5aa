import { mkdtemp, readFile, rm, stat, writeFile, chmod, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { generateWireGuardKeyPair } from "../../proto/lib/keys.js";
import { loadIdentity, prepareDataDir, saveIdentity, type Identity } from "./store.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "plexd-id-"));
  await chmod(dir, 0o700);
});
afterEach(async () => rm(dir, { recursive: true, force: true }));

function sample(): Identity {
  const kp = generateWireGuardKeyPair();
  return {
    nodeId: "n_abc123",
    meshIp: "10.100.1.7",
    privateKey: kp.privateKey,
    publicKey: kp.publicKey,
    nodeSecretKey: Buffer.alloc(32, 7).toString("base64"),
    identityToken: "tok-" + "x".repeat(40),
    signingKeys: { current: Buffer.alloc(32, 1).toString("base64"), previous: null, transition_expires: null },
  };
}

describe("identity store", () => {
  it("round-trips with 0600 files and no temp files left behind", async () => {
    const id = sample();
    await saveIdentity(dir, id);
    const loaded = await loadIdentity(dir);
    expect(loaded).toEqual({ kind: "loaded", identity: id });
    for (const f of await readdir(dir)) {
      expect(f.endsWith(".tmp")).toBe(false);
      expect((await stat(join(dir, f))).mode & 0o777).toBe(0o600);
    }
  });

  it("reports no identity in an empty dir", async () => {
    expect(await loadIdentity(dir)).toEqual({ kind: "none" });
  });

  it("moves a partial identity aside instead of using it", async () => {
    await saveIdentity(dir, sample());
    await rm(join(dir, "identity_token"));
    const r = await loadIdentity(dir, 1_700_000_000_000);
    expect(r.kind).toBe("invalid");
    if (r.kind !== "invalid") return;
    expect(r.movedTo).toBe(join(dir, "identity.invalid-1700000000"));
    expect(await readFile(join(r.movedTo, "identity.json"), "utf8")).toContain("n_abc123");
    expect(await loadIdentity(dir)).toEqual({ kind: "none" });
  });

  it("treats a corrupt key as invalid", async () => {
    await saveIdentity(dir, sample());
    await writeFile(join(dir, "private_key"), "short");
    expect((await loadIdentity(dir)).kind).toBe("invalid");
  });

  it("refuses a data_dir open to others and creates a missing one 0700", async () => {
    await chmod(dir, 0o755);
    await expect(prepareDataDir(dir)).rejects.toThrow(/mode 0755, must be 0700/);
    const fresh = join(dir, "sub", "data");
    await prepareDataDir(fresh);
    expect((await stat(fresh)).mode & 0o777).toBe(0o700);
  });
});
