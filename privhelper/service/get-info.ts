// GetInfo: version and what this host offers. Detection only reads (an installed but unloaded
// kernel module is found with modinfo): nothing is created to find out.
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { WireGuardImpl, type CapabilitiesSchema, type GetInfoRequest, type GetInfoResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { version } from "../../proto/lib/version.js";
import type { CallContext } from "../adapter.js";
import type { PrivConfig } from "../config.js";
import type { Host } from "../os/host.js";
import type { Runner } from "../os/run.js";

type Capabilities = MessageInitShape<typeof CapabilitiesSchema>;

export interface GetInfoDeps { runner: Runner; host: Host; config: PrivConfig; startedAtMs: number }

async function detect(deps: GetInfoDeps): Promise<{ caps: Capabilities; problems: string[] }> {
  const { runner, host } = deps;
  const succeeds = async (file: string, args: string[]) => (await host.which(file)) !== undefined && (await runner.run(file, args, { allowFailure: true, timeoutMs: 5_000 })).exitCode === 0;
  const goPath = (await host.which("wireguard-go")) ?? "";
  const kernel = (await host.exists("/sys/module/wireguard")) || (await succeeds("modinfo", ["-F", "name", "wireguard"]));
  const wireguard = kernel ? WireGuardImpl.KERNEL : goPath ? WireGuardImpl.USERSPACE : WireGuardImpl.NONE;
  // Only what today's RPCs rely on; audit, namespaces and cgroups are detected with the RPCs that need them.
  const caps = { wireguard, wireguardGoPath: goPath, wgTool: (await host.which("wg")) !== undefined, nftables: await succeeds("nft", ["list", "tables"]), tun: await host.exists("/dev/net/tun") };
  const problems = [
    [wireguard === WireGuardImpl.NONE, "no WireGuard: kernel module absent and wireguard-go not on PATH"],
    [wireguard === WireGuardImpl.USERSPACE && !caps.tun, "wireguard-go needs /dev/net/tun, which is missing"],
    [!caps.wgTool, "wg (wireguard-tools) not on PATH"],
    [!caps.nftables, "nftables unusable: `nft list tables` failed or nft is missing"],
  ].flatMap(([bad, text]) => (bad ? [text as string] : []));
  return { caps, problems };
}

export function makeGetInfo(deps: GetInfoDeps) {
  // Detection runs a few subprocesses; the host rarely changes, so an answer is reused for 30 s.
  let cached: { at: number; value: Promise<{ caps: Capabilities; problems: string[] }> } | undefined;
  // Shared by concurrent callers, so not cancelled by any one of them.
  return async (_req: GetInfoRequest, _ctx: CallContext): Promise<MessageInitShape<typeof GetInfoResponseSchema>> => {
    if (!cached || Date.now() - cached.at > 30_000) {
      const value = detect(deps);
      cached = { at: Date.now(), value };
      value.catch(() => (cached = undefined));
    }
    const { caps, problems } = await cached.value;
    return { version, pid: process.pid, startedAt: timestampFromMs(deps.startedAtMs), capabilities: caps, problems, allowedInterfaces: [...deps.config.allowedInterfaces] };
  };
}
