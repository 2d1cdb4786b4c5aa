import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { wireGuardPublicKey } from "../../proto/lib/keys.js";
import { deviceKey } from "./device-keys.js";

const dir = mkdtempSync(join(tmpdir(), "plexd-devkey-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("deviceKey", () => {
  it("makes the key once, 0600 in a 0700 directory, and gives the same pair after", async () => {
    const a = await deviceKey(dir, "wg-access");
    expect(wireGuardPublicKey(a.privateKey)).toBe(a.publicKey);
    expect(statSync(join(dir, "access")).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, "access", "wg-access.key")).mode & 0o777).toBe(0o600);
    expect(await deviceKey(dir, "wg-access")).toEqual(a);
    expect((await deviceKey(dir, "wg-s2s-1a2b3c4d")).publicKey).not.toBe(a.publicKey);
  });

  it("refuses a file that holds no key, and a name that is no interface name", async () => {
    writeFileSync(join(dir, "access", "wg-s2s-bad.key"), "not a key\n", { mode: 0o600 });
    await expect(deviceKey(dir, "wg-s2s-bad")).rejects.toMatchObject({ code: "failed_precondition", message: expect.stringContaining("does not hold a WireGuard private key") });
    await expect(deviceKey(dir, "../etc")).rejects.toMatchObject({ code: "invalid_argument" });
  });
});
