import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { WireGuardImpl, type ReadMeshRequest, type ReadMeshResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import type { CallContext } from "../adapter.js";
import { pskFingerprint, wireGuardPublicKey } from "../../proto/lib/keys.js";
import { Issues, checkInterface } from "../validate.js";
import { readLive, type MeshDeps } from "./apply-mesh.js";

export function makeReadMesh(deps: Pick<MeshDeps, "ip" | "wgFor" | "config">) {
  return async (req: ReadMeshRequest, ctx: CallContext): Promise<MessageInitShape<typeof ReadMeshResponseSchema>> => {
    const issues = new Issues();
    const name = checkInterface(deps.config, req.interface || deps.config.meshInterface, issues);
    issues.throwIfAny();
    const { link, wg } = await readLive(deps, name, ctx.signal);
    if (!link) return { exists: false, interface: name };
    return {
      exists: true,
      up: link.up,
      interface: name,
      publicKey: wg?.publicKey || (wg?.privateKey ? wireGuardPublicKey(wg.privateKey) : ""),
      listenPort: wg?.listenPort ?? 0,
      addresses: link.addresses,
      mtu: link.mtu,
      implementation: link.kind === "wireguard" ? WireGuardImpl.KERNEL : link.kind === "tun" && wg ? WireGuardImpl.USERSPACE : WireGuardImpl.NONE,
      peers: (wg?.peers ?? []).map(({ publicKey, endpoint, allowedIps, presharedKey, latestHandshake, rxBytes, txBytes, keepalive }) => {
        const handshake = latestHandshake > 0 ? { lastHandshake: timestampFromMs(latestHandshake * 1000) } : {};
        return { publicKey, endpoint, allowedIps, pskSha256: pskFingerprint(presharedKey), ...handshake, rxBytes, txBytes, persistentKeepalive: keepalive };
      }),
    };
  };
}
