import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import type { Socket } from "node:net";
import { fileURLToPath } from "node:url";

// SO_PEERCRED through the small N-API addon in ./peercred/ (built by `npm run build:native`):
// Node.js has no accessor for the kernel's record of who opened a unix socket connection.
// Shared by privhelper (which serves only root and the agent's user, and refuses to start
// without it) and the agent's node API (which denies its secrets and admin classes when the
// record cannot be read; the socket mode stays the gate for readers).

/** The kernel-attested identity of the process that connected. */
export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

export type PeerCredReader = (socket: Socket) => PeerCred | undefined;

interface Addon {
  peercred(fd: number): PeerCred;
}

function candidates(): string[] {
  const rel = "build/Release/peercred.node";
  const out: string[] = [];
  if (process.env.PLEXD_PEERCRED_ADDON !== undefined) out.push(process.env.PLEXD_PEERCRED_ADDON);
  // Beside this module (sources, vitest); from a bundle in dist/, in the source tree; from the
  // release (scripts/release.mjs, installed in /usr/local/lib/plexd), beside the bundle.
  out.push(fileURLToPath(new URL(`./peercred/${rel}`, import.meta.url)));
  out.push(fileURLToPath(new URL(`../proto/lib/peercred/${rel}`, import.meta.url)));
  out.push(fileURLToPath(new URL(`./peercred.node`, import.meta.url)));
  return out;
}

let loaded: Addon | null | undefined;

export function loadPeerCredAddon(): Addon | undefined {
  if (loaded !== undefined) return loaded ?? undefined;
  loaded = null;
  const require = createRequire(import.meta.url);
  for (const path of candidates()) {
    if (!existsSync(path)) continue;
    try {
      const mod = require(path) as Partial<Addon>;
      if (typeof mod.peercred === "function") {
        loaded = mod as Addon;
        break;
      }
    } catch {
      // A stale build for another Node ABI: try the next candidate, else go without.
    }
  }
  return loaded ?? undefined;
}

// Node keeps a connected socket's descriptor on its libuv handle; there is no public accessor.
function fdOf(socket: Socket): number | undefined {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } })._handle;
  return typeof handle?.fd === "number" && handle.fd >= 0 ? handle.fd : undefined;
}

/** The reader backed by the addon, or one that always answers undefined when it is missing. */
export function nativePeerCredReader(): PeerCredReader {
  const addon = loadPeerCredAddon();
  return (socket) => {
    const fd = fdOf(socket);
    if (addon === undefined || fd === undefined) return undefined;
    try {
      return addon.peercred(fd);
    } catch {
      return undefined;
    }
  };
}
