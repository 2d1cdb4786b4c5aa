import { chownSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { createTopology, ensureSystemUsers, makeTempDir, nsExec, useHarness, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { nodeId } from "./lib/mesh.js";
import { createNode, type LaunchWrap, type PlexdNode } from "./lib/node.js";

// The `container` sandbox (crun with a bundle generated per run) and cgroup v2 limits, against a
// real agent, privhelper and mockcp in a namespace (docs/actions.md "Sandbox levels"): a
// container hook runs as its user, sees no host process and no host network, writes only its
// writable paths, has no capability, and is killed at its timeout; a hook with `resources`
// gets its cpu.max and memory.max, or, on a machine whose cgroup v2 hierarchy lacks those
// controllers, ends with sandbox_unavailable and the test says why the machine cannot.

useHarness();

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let node: PlexdNode;
let id: string;
let writable: string;
let elsewhere: string;

/** The cgroup v2 mount and its controllers, and why cpu/memory are missing when they are. */
function cgroupV2(): { root?: string; controllers: string[]; why: string } {
  const root = readFileSync("/proc/self/mounts", "utf8").split("\n").map((l) => l.split(" ")).find((f) => f[2] === "cgroup2")?.[1];
  const controllers = root === undefined ? [] : readFileSync(join(root, "cgroup.controllers"), "utf8").trim().split(/\s+/).filter(Boolean);
  // /proc/cgroups: name, v1 hierarchy id (0 = free for v2), number of cgroups, enabled.
  const v1 = readFileSync("/proc/cgroups", "utf8").split("\n").filter((l) => /^(cpu|memory)\s/.test(l)).map((l) => l.split(/\s+/));
  const bound = v1.filter((f) => f[1] !== "0").map((f) => `${f[0]} (cgroup v1 hierarchy ${f[1]}, ${f[2]} cgroups)`);
  const why =
    root === undefined
      ? "no cgroup2 file system is mounted"
      : `cgroup2 at ${root} offers [${controllers.join(" ")}]; ${bound.join(" and ")} ${bound.length === 1 ? "is" : "are"} bound to cgroup v1. A controller moves to cgroup v2 only once its v1 hierarchy is unmounted in every mount namespace and left without child cgroups; a second cgroup2 mount is the same single hierarchy. On a shared machine the test cannot take the controllers away from v1 (memory's hierarchy holds the machine's own cgroups).`;
  return { ...(root !== undefined ? { root } : {}), controllers, why };
}

const cg = cgroupV2();
const limitsPossible = cg.controllers.includes("cpu") && cg.controllers.includes("memory");

// crun wants a cgroup file system at /sys/fs/cgroup, even with its cgroup manager disabled, but
// `ip netns exec` (how the harness starts processes in a namespace) mounts a fresh /sys without
// one. privhelper therefore starts in a mount namespace of its own with the cgroup2 hierarchy
// mounted there, as a host booted with cgroup v2 has it. (This machine's own layout, v1 beside
// a cgroup2 mount with a controller, is one crun refuses as "hybrid".) The rest stays as it is.
const wrap: LaunchWrap = (role, argv) =>
  role === "privhelper"
    ? ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", 'mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$@"', "privhelper", ...argv]
    : ["setpriv", "--reuid=plexd", "--regid=plexd", "--init-groups", "--", ...argv];

beforeAll(async () => {
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["sb"] });
  cp = await startCpOnHub(topo);
  const { token } = await cp.client.createToken();
  const scratch = makeTempDir("sandbox-scratch", { mode: 0o755 });
  writable = join(scratch, "writable");
  elsewhere = join(scratch, "elsewhere");
  for (const d of [writable, elsewhere]) {
    mkdirSync(d, { mode: 0o777 });
    chownSync(d, 0, 0);
    // mkdir's mode is cut by the umask.
    writeFileSync(join(d, ".keep"), "");
  }
  await nsExec(topo.node("sb").ns, ["chmod", "0777", writable, elsewhere]);
  const hooksDir = join(makeTempDir("sandbox-hooks", { mode: 0o755 }), "hooks.d");
  mkdirSync(hooksDir, { mode: 0o755 });
  const hook = (name: string, body: string): string => {
    const p = join(hooksDir, name);
    writeFileSync(p, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    return p;
  };
  const probe = hook(
    "probe.sh",
    [
      'echo "uid=$(id -u) self=$$"',
      "echo \"pids=$(ls /proc | grep -c '^[0-9]')\"",
      `touch ${elsewhere}/escaped 2>/dev/null && echo outside=written || echo outside=refused`,
      "touch /etc/plexd-hook-escape 2>/dev/null && echo etc=written || echo etc=refused",
      `touch ${writable}/inside && echo writable=written || echo writable=refused`,
      "echo \"links=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')\"",
      "grep -E '^(CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status",
      'printf "msg=%s|\\n" "$PLEXD_PARAM_MSG"',
    ].join("\n"),
  );
  const sleeper = hook("sleeper.sh", "trap '' TERM\necho started\nsleep 300 # plexd-e2e-box-sleeper\necho never");
  // Reads its own cgroup's limits, then allocates 256 MiB (over a 64 MiB memory.max).
  const limited = hook(
    "limited.sh",
    ['cg="$(awk \'$3 == "cgroup2" { print $2 }\' /proc/mounts | head -n 1)$(sed -n \'s/^0:://p\' /proc/self/cgroup)"', 'echo "cpu.max=$(cat "$cg/cpu.max") memory.max=$(cat "$cg/memory.max")"', "head -c 268435456 /dev/zero | tail -c 1 >/dev/null", "echo survived"].join("\n"),
  );
  node = createNode({
    name: "sb",
    ns: topo.node("sb").ns,
    api: `https://${topo.hub.ip}:${cpPort}`,
    caFile: cp.caFile,
    users,
    token,
    wrap,
    config: {
      hooks: {
        dir: hooksDir,
        definitions: [
          { name: "box", path: probe, sandbox: "container", parameters: [{ name: "msg", type: "string" }], sandbox_options: { writable_paths: [writable] } },
          { name: "box-sleeper", path: sleeper, sandbox: "container", timeout: "2s" },
          { name: "limited", path: limited, resources: { cpu: 0.5, memory: "64M" } },
        ],
      },
    },
  });
  await node.startPrivhelper();
  node.startAgent();
  await node.agent!.waitForLine(/"msg":"event stream connected"/, 60_000);
  id = nodeId(node);
});

type Result = { status: string; exit_code: number; stdout: string; stderr: string };
const run = async (action: string, parameters: Record<string, string> = {}, extra: { timeout?: string } = {}) => {
  const { execution_id } = await cp.client.pushAction(id, { action, parameters, ...extra });
  const rec = await cp.client.waitForResult(id, execution_id, { timeoutMs: 60_000 });
  return rec.result!.body as Result;
};

describe("container sandbox (crun)", () => {
  it("runs the hook as its user in its own PID, mount and network namespaces: read-only but its writable paths, no capability", async () => {
    const msg = "$(touch /tmp/pwned); `id`\nsecond line";
    const result = await run("hooks/box", { msg });
    expect(result.status, result.stderr).toBe("success");
    const out = result.stdout;
    // The hook is the container's first process: no init of bubblewrap's in between.
    expect(out).toContain("uid=65534 self=1");
    expect(Number(/pids=(\d+)/.exec(out)?.[1])).toBeLessThan(5);
    expect(out).toContain("outside=refused");
    expect(out).toContain("etc=refused");
    expect(out).toContain("writable=written");
    // network: none (the default) is a namespace with loopback alone.
    expect(out).toMatch(/^links=lo $/m);
    for (const c of ["CapEff", "CapBnd", "CapAmb"]) expect(out).toMatch(new RegExp(`${c}:\\s+0000000000000000`));
    expect(out).toMatch(/NoNewPrivs:\s+1/);
    expect(out).toContain(`msg=${msg}|`);
    expect((await nsExec(node.ns, ["sh", "-c", "test -e /tmp/pwned && echo yes || echo no"])).stdout.trim()).toBe("no");
    // The bundle and crun's state went with the run.
    expect((await nsExec(node.ns, ["sh", "-c", `ls -d /proc/${node.privhelper!.pid}/root/tmp/plexd-hook-* 2>/dev/null | wc -l`])).stdout.trim()).toBe("0");
  });

  it("a container hook that ignores SIGTERM is killed at its timeout and leaves no process behind", async () => {
    const t0 = Date.now();
    const result = await run("hooks/box-sleeper", {}, { timeout: "2s" });
    expect(result).toMatchObject({ status: "timeout", exit_code: -1 });
    expect(result.stdout).toContain("started");
    expect(Date.now() - t0).toBeLessThan(2000 + 5000 + 5000);
    expect((await nsExec(node.ns, ["pgrep", "-f", "plexd-e2e-box-sleeper"], { reject: false })).stdout.trim()).toBe("");
  });
});

describe("cgroup v2 limits", () => {
  it(limitsPossible ? "a hook gets its cpu.max and memory.max, and going over memory.max kills it" : "this machine has no cgroup v2 cpu/memory controllers: a hook with resources ends with sandbox_unavailable", async () => {
    const result = await run("hooks/limited");
    if (limitsPossible) {
      expect(result.stdout).toContain("cpu.max=50000 100000 memory.max=67108864");
      expect(result.stdout).not.toContain("survived");
      expect(result.status).toBe("failure");
      return;
    }
    console.log(`cgroup v2 limits cannot be shown on this machine: ${cg.why}`);
    expect(result).toMatchObject({ status: "error", exit_code: -1 });
    expect(result.stderr).toContain(`sandbox_unavailable: no cgroup v2 ${["cpu", "memory"].filter((c) => !cg.controllers.includes(c)).join(" and ")} controller for the hook's resources`);
  });
});
