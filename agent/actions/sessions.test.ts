import { mkdtempSync, rmSync, statSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { generateKeyPairSync } from "node:crypto";
import { SignJWT } from "jose";
import { rawPublicKey } from "../../proto/lib/keys.js";
import type { AgentRuntime } from "../runtime.js";
import { plainWriter } from "../util/atomic.js";
import { createLogger } from "../util/log.js";
import { openSessions, revokedFile } from "./sessions.js";

// The revocation set on disk: a revoked session stays revoked across an agent restart.

const dir = mkdtempSync(join(tmpdir(), "plexd-sessions-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const log = createLogger({ name: "test", level: "silent" });
const open = () => openSessions({ runtime: () => undefined, now: Date.now, log, dataDir: dir, writer: plainWriter });

describe("session revocations on disk", () => {
  it("are written 0600 on every revocation and read back at start", async () => {
    const s = await open();
    s.revoke({ session_id: "sess_gone", revoked_at: new Date().toISOString() });
    await expect.poll(() => statSync(revokedFile(dir), { throwIfNoEntry: false })?.mode).toBeDefined();
    expect(statSync(revokedFile(dir)).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "sessions")).mode & 0o777).toBe(0o700);
    const again = await open();
    // No signing keys (no runtime) would refuse anyway: ask the set through a token-free path.
    expect((await again.verify("not-a-jwt", "system.info")).ok).toBe(false);
    const { RevocationSet } = await import("./session-token.js");
    const { readFileSync } = await import("node:fs");
    expect(RevocationSet.from(JSON.parse(readFileSync(revokedFile(dir), "utf8")), Date.now()).refusal("sess_gone", 0, Date.now())).toMatch(/revoked/);
  });

  it("a damaged file fails closed: tokens issued before the start are refused, later ones run", async () => {
    const d2 = mkdtempSync(join(tmpdir(), "plexd-sessions-"));
    try {
      mkdirSync(join(d2, "sessions"), { mode: 0o700 });
      writeFileSync(revokedFile(d2), "{not json");
      const { privateKey } = generateKeyPairSync("ed25519");
      const runtime = () => ({ identity: { nodeId: "n1", signingKeys: { current: rawPublicKey(privateKey) } } }) as unknown as AgentRuntime;
      const s = await openSessions({ runtime, now: Date.now, log, dataDir: d2, writer: plainWriter });
      const nowS = Math.floor(Date.now() / 1000);
      const mint = (iat: number) => new SignJWT({ iss: "plexsphere", sub: "u", email: "e@x", node_id: "n1", session_id: "s", actions: ["*"], iat, exp: iat + 600 }).setProtectedHeader({ alg: "EdDSA" }).sign(privateKey);
      expect(await s.verify(await mint(nowS - 60), "system.info")).toMatchObject({ ok: false, reason: expect.stringMatching(/^issued before/) });
      expect(await s.verify(await mint(nowS + 5), "system.info")).toMatchObject({ ok: true });
    } finally {
      rmSync(d2, { recursive: true, force: true });
    }
  });
});
