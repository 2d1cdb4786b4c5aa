import { chmodSync, chownSync, mkdirSync, renameSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { createTopology, ensureSystemUsers, makeTempDir, nsExec, useHarness, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { linesWith } from "./lib/logs.js";
import { nodeId } from "./lib/mesh.js";
import { createNode, type PlexdNode } from "./lib/node.js";

// Hooks against a real agent, privhelper (bubblewrap + setpriv) and mockcp in a namespace
// (docs/actions.md "Hooks"): a declared hook runs in the namespaced sandbox as its user, sees
// no host process and writes only its writable paths; parameters arrive as text in the
// environment, never through a shell; a hook that ignores SIGTERM is killed at its timeout; a
// hook edited after the scan, or a symlink out of hooks.dir, is refused with
// integrity_violation; the concurrency limit holds for 100 requests at once; and a result
// finished while mockcp is down arrives after it returns, with an agent restart in between.

useHarness();

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let node: PlexdNode;
let id: string;
let hooksDir: string;
let writable: string;
let elsewhere: string;

const hook = (name: string, body: string): string => {
  const p = join(hooksDir, name);
  writeFileSync(p, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  chmodSync(p, 0o755);
  return p;
};

async function startAgent(waitConnected = true): Promise<void> {
  const p = node.startAgent();
  if (waitConnected) await p.waitForLine(/"msg":"event stream connected"/, 60_000);
  else await p.waitForLine(/"msg":"hooks scanned"/, 60_000);
}

beforeAll(async () => {
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["hk"] });
  cp = await startCpOnHub(topo);
  const { token } = await cp.client.createToken();
  // Directories the hook's user (nobody) could write if the sandbox let it.
  const scratch = makeTempDir("hook-scratch", { mode: 0o755 });
  writable = join(scratch, "writable");
  elsewhere = join(scratch, "elsewhere");
  for (const d of [writable, elsewhere]) {
    mkdirSync(d, { mode: 0o777 });
    chmodSync(d, 0o777);
  }
  node = createNode({
    name: "hk",
    ns: topo.node("hk").ns,
    api: `https://${topo.hub.ip}:${cpPort}`,
    caFile: cp.caFile,
    users,
    token,
    config: { actions: { max_concurrent: 2, drain_timeout: "2s" } },
  });
  hooksDir = join(node.root, "etc", "hooks.d");
  mkdirSync(hooksDir, { mode: 0o755 });
  const probe = hook(
    "probe.sh",
    [
      'echo "uid=$(id -u) user=$(id -un)"',
      "echo \"pids=$(ls /proc | grep -c '^[0-9]')\"",
      'echo "pid1=$(cat /proc/1/comm)"',
      `touch ${elsewhere}/escaped 2>/dev/null && echo outside=written || echo outside=refused`,
      "touch /etc/plexd-hook-escape 2>/dev/null && echo etc=written || echo etc=refused",
      `touch ${writable}/inside && echo writable=written || echo writable=refused`,
      'printf "msg=%s|\\n" "$PLEXD_PARAM_MSG"',
      "grep NoNewPrivs /proc/self/status",
      "env | grep -v '^PWD=\\|^SHLVL=\\|^_=' | sort >&2",
    ].join("\n"),
  );
  const sleeper = hook("sleeper.sh", "trap '' TERM\necho started\nsleep 300 # plexd-e2e-sleeper\necho never");
  const slow = hook("slow.sh", 'sleep "${PLEXD_PARAM_SECONDS:-2}"\necho done');
  const edited = hook("edited.sh", "echo original");
  const outside = join(scratch, "outside.sh");
  writeFileSync(outside, "#!/bin/sh\necho outside\n", { mode: 0o755 });
  symlinkSync(outside, join(hooksDir, "escape.sh"));
  const def = (name: string, path: string, extra: Record<string, unknown> = {}) => ({ name, path, ...extra });
  const { parse, stringify } = await import("yaml");
  const { readFileSync } = await import("node:fs");
  const cfg = parse(readFileSync(node.configFile, "utf8")) as Record<string, Record<string, unknown>>;
  cfg.hooks = {
    ...cfg.hooks,
    definitions: [
      def("probe", probe, { parameters: [{ name: "msg", type: "string", required: true }], sandbox_options: { writable_paths: [writable] } }),
      def("sleeper", sleeper, { timeout: "2s" }),
      def("sleeper-none", sleeper, { timeout: "2s", sandbox: "none" }),
      def("slow", slow, { parameters: [{ name: "seconds", type: "int", default: "2" }] }),
      def("edited", edited),
      def("escape", join(hooksDir, "escape.sh")),
    ],
  };
  writeFileSync(node.configFile, stringify(cfg));
  chownSync(node.configFile, 0, users.groups.plexd);
  await node.startPrivhelper();
  await startAgent();
  id = nodeId(node);
});

type Result = { status: string; exit_code: number; stdout: string; stderr: string };
const run = async (action: string, parameters: Record<string, string | number | boolean> = {}, extra: { checksum?: string; timeout?: string } = {}) => {
  const { execution_id } = await cp.client.pushAction(id, { action, parameters, ...extra });
  const rec = await cp.client.waitForResult(id, execution_id, { timeoutMs: 60_000 });
  return { execution_id, acks: rec.acks.map((a) => a.body), result: rec.result!.body as Result };
};
const acks = async (executionId: string) => (await cp.client.execution(id, executionId)).acks.map((a) => a.body as { status: string; reason: string });
const hooksAnnounced = async () => (await cp.client.capabilities(id)).capabilities as { hooks: { name: string; checksum: string; sandbox: string; timeout: string }[] };

describe("declared hooks", () => {
  it("are announced with their checksums; a symlink out of hooks.dir is announced unavailable", async () => {
    const { hooks } = await hooksAnnounced();
    const by = Object.fromEntries(hooks.map((h) => [h.name, h]));
    expect(Object.keys(by).sort()).toEqual(["edited", "escape", "probe", "sleeper", "sleeper-none", "slow"]);
    expect(by.probe).toMatchObject({ checksum: expect.stringMatching(/^sha256:[0-9a-f]{64}$/), sandbox: "namespaced", source: "script" });
    expect(by.sleeper!.timeout).toBe("2s");
    expect(by.escape!.checksum).toBe("");
  });

  it("runs in the namespaced sandbox as its user: no host PIDs, read-only outside its writable paths, parameters as plain text", async () => {
    const msg = "$(touch /tmp/pwned); `id` && rm -rf / ; echo 'x' | cat\nsecond line";
    const { acks: a, result } = await run("hooks/probe", { msg });
    expect(a).toEqual([expect.objectContaining({ status: "accepted" })]);
    expect(result.status, result.stderr).toBe("success");
    const out = result.stdout;
    expect(out).toContain("uid=65534 user=nobody");
    expect(Number(/pids=(\d+)/.exec(out)?.[1])).toBeLessThan(10);
    expect(out).toContain("pid1=bwrap");
    expect(out).toContain("outside=refused");
    expect(out).toContain("etc=refused");
    expect(out).toContain("writable=written");
    expect(out).toContain(`msg=${msg}|`);
    expect(out).toMatch(/NoNewPrivs:\s+1/);
    // Nothing inherited from the agent: exactly these variables (the shell adds PWD, SHLVL and _).
    const env = result.stderr.split("\n").flatMap((l) => /^([A-Z_][A-Z0-9_]*)=/.exec(l)?.[1] ?? []);
    expect(env).toEqual(["HOME", "PATH", "PLEXD_ACTION_NAME", "PLEXD_EXECUTION_ID", "PLEXD_NODE_ID", "PLEXD_PARAM_MSG"]);
    expect(result.stderr).toContain(`PLEXD_ACTION_NAME=probe\n`);
    // Nothing the parameter text spelled out ran anywhere.
    expect((await nsExec(node.ns, ["sh", "-c", "test -e /tmp/pwned && echo yes || echo no"])).stdout.trim()).toBe("no");
  });

  it("a hook that ignores SIGTERM is killed at its timeout, in both sandboxes, and leaves no process behind", async () => {
    for (const name of ["hooks/sleeper", "hooks/sleeper-none"]) {
      const t0 = Date.now();
      // The request's timeout wins over the hook's declared one (mockcp always sends one).
      const { result } = await run(name, {}, { timeout: "2s" });
      expect(result).toMatchObject({ status: "timeout", exit_code: -1 });
      expect(result.stdout).toContain("started");
      expect(Date.now() - t0).toBeLessThan(2000 + 5000 + 5000);
      expect((await nsExec(node.ns, ["pgrep", "-f", "plexd-e2e-sleeper"], { reject: false })).stdout.trim()).toBe("");
    }
  });

  // The container level: actions-sandbox.test.ts; without crun it is sandbox_unavailable
  // (privhelper/service/run-sandboxed.test.ts).
});

describe("integrity", () => {
  it("a hook edited after the scan is rejected with integrity_violation and reported", async () => {
    const before = (await hooksAnnounced()).hooks.find((h) => h.name === "edited")!.checksum;
    // Replaced the way an editor saves: a new file renamed over the old one.
    const tmp = join(hooksDir, ".edited.sh.tmp");
    writeFileSync(tmp, "#!/bin/sh\necho tampered\n", { mode: 0o755 });
    renameSync(tmp, join(hooksDir, "edited.sh"));
    const { execution_id } = await cp.client.pushAction(id, { action: "hooks/edited", checksum: before });
    await expect.poll(() => acks(execution_id), { timeout: 30_000 }).toEqual([{ execution_id, status: "rejected", reason: "integrity_violation" }]);
    const violations = await cp.client.integrityViolations(id);
    expect(violations.map((v) => v.body)).toEqual(expect.arrayContaining([expect.objectContaining({ type: "hook", path: join(hooksDir, "edited.sh"), expected_checksum: expect.stringMatching(/^sha256:/), actual_checksum: expect.stringMatching(/^sha256:/) })]));
    expect(linesWith(node.agent!.output(), "action started", { execution_id })).toEqual([]);
    // The change is announced (inotify): the control plane can approve the new content.
    await expect.poll(async () => (await hooksAnnounced()).hooks.find((h) => h.name === "edited")!.checksum, { timeout: 10_000 }).not.toBe(before);
  });

  it("a symlink escaping hooks.dir is refused", async () => {
    const { execution_id } = await cp.client.pushAction(id, { action: "hooks/escape" });
    await expect.poll(() => acks(execution_id), { timeout: 30_000 }).toEqual([{ execution_id, status: "rejected", reason: "integrity_violation" }]);
  });
});

describe("plexd actions and plexd hooks", () => {
  it("list what can run, check the files and rescan", async () => {
    const list = await node.plexd(["hooks", "list", "-o", "json"]);
    expect(list.exitCode, list.output).toBe(0);
    const hooks = (JSON.parse(list.output) as { hooks: { name: string; ok: boolean; problem: string; announced_checksum: string }[] }).hooks;
    const by = Object.fromEntries(hooks.map((h) => [h.name, h]));
    expect(by.probe).toMatchObject({ ok: true, problem: "" });
    expect(by.escape).toMatchObject({ ok: false, announced_checksum: "" });
    expect(by.escape!.problem).toContain("outside hooks.dir");

    // One hook can never run (the symlink): verify says so with exit code 8.
    const verify = await node.plexd(["hooks", "verify"]);
    expect(verify.exitCode, verify.output).toBe(8);
    expect(verify.output).toMatch(/probe\s+namespaced\s+30s\s+sha256:\S+\s+yes/);

    const reload = await node.plexd(["hooks", "reload"]);
    expect(reload.exitCode, reload.output).toBe(0);
    expect(linesWith(node.agent!.output(), "hooks scanned", { why: "plexd hooks reload" })).toHaveLength(1);

    const actions = await node.plexd(["actions"]);
    expect(actions.exitCode, actions.output).toBe(0);
    expect(actions.output).toMatch(/^system\.info\s/m);
    expect(actions.output).toMatch(/^hooks\/probe\s+msg:string!/m);
    expect(actions.output).toMatch(/^hooks\/escape\s+-\s+unavailable: resolves to/m);
    expect(actions.output).toMatch(/EXECUTION\s+ACTION\s+STATUS/);
  });
});

// Last: its restarted agent is stopped by the harness once the test ends.
describe("limits and delivery", () => {
  it("of 100 requests at once over max_concurrent, two run and the rest get max_concurrent_reached", async () => {
    const pushed = await Promise.all(Array.from({ length: 100 }, () => cp.client.pushAction(id, { action: "hooks/slow", parameters: { seconds: 10 } })));
    const all = async () => Promise.all(pushed.map((p) => acks(p.execution_id)));
    await expect.poll(async () => (await all()).every((a) => a.length === 1), { timeout: 60_000 }).toBe(true);
    const got = (await all()).map((a) => a[0]!);
    expect(got.filter((a) => a.status === "accepted")).toHaveLength(2);
    expect(got.filter((a) => a.reason === "max_concurrent_reached")).toHaveLength(98);
    expect(linesWith(node.agent!.output(), "action started").filter((l) => pushed.some((p) => p.execution_id === l.execution_id))).toHaveLength(2);
    for (const p of pushed) if ((await acks(p.execution_id))[0]!.status === "accepted") await cp.client.waitForResult(id, p.execution_id, { timeoutMs: 60_000 });
  });

  it("a result finished while mockcp is down arrives after it returns, with an agent restart in between", async () => {
    const { execution_id } = await cp.client.pushAction(id, { action: "hooks/slow", parameters: { seconds: 3 } });
    await expect.poll(() => acks(execution_id), { timeout: 30_000 }).toHaveLength(1);
    await cp.client.setOffline();
    try {
      await expect.poll(() => linesWith(node.agent!.output(), "action result not delivered; kept and retried", { execution_id }).length, { timeout: 30_000 }).toBeGreaterThan(0);
      expect((await cp.client.execution(id, execution_id)).result).toBeNull();
      await node.agent!.kill("SIGTERM", { graceMs: 15_000 });
      await startAgent(false);
    } finally {
      await cp.client.setOnline();
    }
    const rec = await cp.client.waitForResult(id, execution_id, { timeoutMs: 60_000 });
    expect(rec.result!.body).toMatchObject({ execution_id, status: "success", stdout: "done\n" });
    expect(rec.acks).toHaveLength(1);
  });
});
