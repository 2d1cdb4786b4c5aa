import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { WireGuardImpl, type CapabilitiesSchema, type GetInfoRequest, type GetInfoResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import type { CallContext } from "../adapter.js";
import type { PrivConfig } from "../config.js";
import type { Host } from "../os/host.js";
import type { Runner } from "../os/run.js";

type Capabilities = MessageInitShape<typeof CapabilitiesSchema>;

export interface GetInfoDeps {
  runner: Runner;
  host: Host;
  config: PrivConfig;
  startedAtMs: number;
  now?: () => number;
}

export function packageVersion(): string {
  try {
    // Both privhelper/ (sources, tests) and dist/ (bundle) sit one level below package.json.
    return (createRequire(import.meta.url)("../package.json") as { version: string }).version;
  } catch {
    return "0.0.0-dev";
  }
}

/** Which WireGuard the host offers: the kernel module, else wireguard-go on PATH. */
export async function detectWireGuard(runner: Runner, host: Host, signal?: AbortSignal): Promise<{ impl: WireGuardImpl; goPath: string }> {
  const goPath = (await host.which("wireguard-go")) ?? "";
  if (await host.exists("/sys/module/wireguard")) return { impl: WireGuardImpl.KERNEL, goPath };
  // The module may be loadable on demand: creating a throwaway link loads it if possible.
  const probe = `plexdprb${randomBytes(3).toString("hex")}`;
  const opts = { allowFailure: true, timeoutMs: 5_000, ...(signal ? { signal } : {}) };
  const add = await runner.run("ip", ["link", "add", probe, "type", "wireguard"], opts);
  if (add.exitCode === 0) {
    await runner.run("ip", ["link", "del", probe], opts);
    return { impl: WireGuardImpl.KERNEL, goPath };
  }
  return { impl: goPath ? WireGuardImpl.USERSPACE : WireGuardImpl.NONE, goPath };
}

async function detect(deps: GetInfoDeps, signal: AbortSignal): Promise<{ caps: Capabilities; problems: string[] }> {
  const { runner, host } = deps;
  const problems: string[] = [];
  const succeeds = async (file: string, args: string[]) => {
    if (!(await host.which(file))) return false;
    const r = await runner.run(file, args, { allowFailure: true, timeoutMs: 5_000, signal }).catch(() => undefined);
    return r?.exitCode === 0;
  };
  const wg = await detectWireGuard(runner, host, signal);
  const wgTool = (await host.which("wg")) !== undefined;
  const nftables = await succeeds("nft", ["list", "tables"]);
  // AF_AUDIT cannot be opened from Node without a native addon; a kernel built with audit
  // support exposes loginuid, which is the honest, cheap signal available here.
  const audit = await host.exists("/proc/self/loginuid");
  const netns = (await host.exists("/proc/self/ns/net")) && (await succeeds("ip", ["netns", "list"]));
  const cgroupV2 = await host.exists("/sys/fs/cgroup/cgroup.controllers");
  const tun = await host.exists("/dev/net/tun");
  let oci = false;
  for (const rt of ["runc", "crun", "podman"]) if (await host.which(rt)) oci = true;

  if (wg.impl === WireGuardImpl.NONE) problems.push("no WireGuard: kernel module absent and wireguard-go not on PATH");
  if (wg.impl === WireGuardImpl.USERSPACE && !tun) problems.push("wireguard-go needs /dev/net/tun, which is missing");
  if (!wgTool) problems.push("wg (wireguard-tools) not on PATH");
  if (!nftables) problems.push("nftables unusable: `nft list tables` failed or nft is missing");
  if (!audit) problems.push("kernel audit support not detected (/proc/self/loginuid missing)");
  if (!netns) problems.push("network namespaces unusable (/proc/self/ns/net or `ip netns` failed)");
  if (!cgroupV2) problems.push("cgroup v2 not mounted at /sys/fs/cgroup (hook resource limits unavailable)");
  if (!oci) problems.push("no OCI runtime (runc, crun, podman) on PATH: container sandbox unavailable");
  return {
    caps: { wireguard: wg.impl, wireguardGoPath: wg.goPath, wgTool, nftables, audit, netns, cgroupV2, ociRuntime: oci, tun },
    problems,
  };
}

// Detection runs a few subprocesses; the host rarely changes, so answers are reused briefly.
const cacheMs = 30_000;

export function makeGetInfo(deps: GetInfoDeps) {
  const now = deps.now ?? Date.now;
  let cached: { at: number; value: Promise<{ caps: Capabilities; problems: string[] }> } | undefined;
  return async (_req: GetInfoRequest, ctx: CallContext): Promise<MessageInitShape<typeof GetInfoResponseSchema>> => {
    if (!cached || now() - cached.at > cacheMs) {
      const value = detect(deps, ctx.signal);
      cached = { at: now(), value };
      value.catch(() => (cached = undefined));
    }
    const { caps, problems } = await cached.value;
    return {
      version: packageVersion(),
      pid: process.pid,
      startedAt: timestampFromMs(deps.startedAtMs),
      capabilities: caps,
      problems,
      allowedInterfaces: [...deps.config.allowedInterfaces],
    };
  };
}
