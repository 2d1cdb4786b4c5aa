// Re-adoption at start (design.md 2): privhelper persists nothing, so "adopting" is only
// looking. Existing devices are left exactly as they are — tunnels stay up — and the next
// ApplyMesh diffs against them like against any live device.
import type { Logger } from "../log.js";
import { readLive, type MeshDeps } from "../service/apply-mesh.js";
import { findWireguardGo } from "./device.js";

export async function reportExisting(deps: MeshDeps, log: Logger): Promise<void> {
  for (const name of deps.config.allowedInterfaces) {
    try {
      const [live, pids] = await Promise.all([readLive(deps, name), findWireguardGo(deps.host, name)]);
      if (live.link) log.info({ interface: name, kind: live.link.kind, up: live.link.up, peers: live.wg?.peers.length ?? 0, wireguardGo: pids }, "adopted existing interface");
      else if (pids.length > 0) log.warn({ interface: name, wireguardGo: pids }, "wireguard-go running without its interface");
    } catch (err) {
      log.warn({ interface: name, err: (err as Error).message }, "could not inspect existing interface");
    }
  }
}
