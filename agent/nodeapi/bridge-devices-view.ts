// Traffic of the bridge's own WireGuard devices (site-to-site tunnels, user access) for
// GetBridgeStatus (docs/bridge.md#status): read from the kernel through ReadMesh when asked, so
// `plexd status` and `plexd top` show live handshakes and byte counts without any polling.
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { PlexdError } from "../../proto/lib/errors.js";
import type { PrivClient } from "../privclient/client.js";

export interface DeviceTraffic {
  lastHandshake?: Timestamp;
  rxBytes: bigint;
  txBytes: bigint;
}

/** Per device name; a device ReadMesh cannot read (gone meanwhile, privhelper down) is left out. */
export async function bridgeDeviceTraffic(priv: Pick<PrivClient, "readMesh">, names: readonly string[], timeoutMs: number): Promise<Map<string, DeviceTraffic>> {
  const out = new Map<string, DeviceTraffic>();
  await Promise.all(
    names.map(async (name) => {
      const m = await priv.readMesh({ interface: name }, { timeoutMs }).catch((err: unknown) => {
        if (PlexdError.from(err).code === "cancelled") throw err;
        return undefined;
      });
      if (!m?.exists) return;
      let latest: Timestamp | undefined;
      const t: DeviceTraffic = { rxBytes: 0n, txBytes: 0n };
      for (const p of m.peers) {
        t.rxBytes += p.rxBytes;
        t.txBytes += p.txBytes;
        const hs = p.lastHandshake;
        if (hs && (hs.seconds > 0n || hs.nanos > 0) && (!latest || hs.seconds > latest.seconds || (hs.seconds === latest.seconds && hs.nanos > latest.nanos))) latest = hs;
      }
      out.set(name, latest ? { ...t, lastHandshake: latest } : t);
    }),
  );
  return out;
}
