import { generateKeyPairSync } from "node:crypto";
import { chownSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { rawPublicKey } from "../../proto/lib/keys.js";
import { createTopology, ensureSystemUsers, makeTempDir, useHarness, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { nodeId } from "./lib/mesh.js";
import { createNode, type PlexdNode } from "./lib/node.js";

// Signed hooks (docs/actions.md "Signed hooks") with a real agent, privhelper and mockcp:
// with hooks.require_signature and two trusted keys (a rotation), a hook signed with
// `plexd hooks sign` by the second key runs; an unsigned hook and one signed by an untrusted
// key are announced with an empty checksum and refused with integrity_violation.

useHarness();

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let node: PlexdNode;
let id: string;

const keyFile = (dir: string, name: string) => {
  const { privateKey } = generateKeyPairSync("ed25519");
  const path = join(dir, `${name}.pem`);
  writeFileSync(path, privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o600 });
  return { path, pub: rawPublicKey(privateKey) };
};

beforeAll(async () => {
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["sg"] });
  cp = await startCpOnHub(topo);
  const { token } = await cp.client.createToken();
  const keys = makeTempDir("hook-keys");
  const [old, current, stranger] = [keyFile(keys, "old"), keyFile(keys, "current"), keyFile(keys, "stranger")];
  node = createNode({ name: "sg", ns: topo.node("sg").ns, api: `https://${topo.hub.ip}:${cpPort}`, caFile: cp.caFile, users, token });
  const dir = join(node.root, "etc", "hooks.d");
  mkdirSync(dir, { mode: 0o755 });
  for (const name of ["signed", "unsigned", "stranger"]) writeFileSync(join(dir, `${name}.sh`), `#!/bin/sh\necho ${name}\n`, { mode: 0o755 });
  for (const [hook, key] of [["signed", current], ["stranger", stranger]] as const) {
    const r = await node.plexd(["hooks", "sign", "--key", key.path, join(dir, `${hook}.sh`)], { asRoot: true });
    expect(r.exitCode, r.output).toBe(0);
    expect(r.output).toContain(`public key (hooks.trusted_keys): ${key.pub}`);
  }
  expect(statSync(join(dir, "signed.sh.sig")).mode & 0o777).toBe(0o644);
  expect(existsSync(join(dir, "unsigned.sh.sig"))).toBe(false);
  const cfg = parse(readFileSync(node.configFile, "utf8")) as Record<string, Record<string, unknown>>;
  cfg.hooks = { ...cfg.hooks, trusted_keys: [old.pub, current.pub], require_signature: true, definitions: ["signed", "unsigned", "stranger"].map((n) => ({ name: n, path: join(dir, `${n}.sh`), sandbox: "none" })) };
  writeFileSync(node.configFile, stringify(cfg));
  chownSync(node.configFile, 0, users.groups.plexd);
  await node.startPrivhelper();
  await node.startAgent().waitForLine(/"msg":"event stream connected"/, 60_000);
  id = nodeId(node);
});

describe("require_signature", () => {
  it("announces only the hook signed by a trusted key, and marks it signed", async () => {
    const { hooks } = (await cp.client.capabilities(id)).capabilities as { hooks: { name: string; checksum: string; signed: boolean }[] };
    const by = Object.fromEntries(hooks.map((h) => [h.name, h]));
    expect(by.signed).toMatchObject({ checksum: expect.stringMatching(/^sha256:/), signed: true });
    expect(by.unsigned).toMatchObject({ checksum: "", signed: false });
    expect(by.stranger).toMatchObject({ checksum: "", signed: false });
  });

  it("runs the signed hook and refuses the others with integrity_violation", async () => {
    const ok = await cp.client.pushAction(id, { action: "hooks/signed" });
    const rec = await cp.client.waitForResult(id, ok.execution_id, { timeoutMs: 30_000 });
    expect(rec.result!.body).toMatchObject({ status: "success", stdout: "signed\n" });
    for (const name of ["unsigned", "stranger"]) {
      const { execution_id } = await cp.client.pushAction(id, { action: `hooks/${name}` });
      await expect.poll(async () => (await cp.client.execution(id, execution_id)).acks.map((a) => a.body), { timeout: 30_000 }).toEqual([{ execution_id, status: "rejected", reason: "integrity_violation" }]);
    }
  });

  it("plexd hooks list says why", async () => {
    const r = await node.plexd(["hooks", "list"]);
    expect(r.exitCode, r.output).toBe(0);
    expect(r.output).toMatch(/unsigned\s.*unsigned \(no .*unsigned\.sh\.sig\); hooks\.require_signature is on/);
    expect(r.output).toMatch(/stranger\s.*signature not by a trusted key/);
  });
});
