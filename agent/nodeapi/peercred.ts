import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import type { Socket } from "node:net";
import { fileURLToPath } from "node:url";
import type { PeerCred } from "./access.js";

// SO_PEERCRED through the small N-API addon in ./peercred/ (built by `npm run build:native`).
// When the addon is not built, or the kernel refuses, the reader returns undefined and the
// secrets and admin classes are denied (spec/node-agent.md §6.1) — the socket mode remains
// the gate for readers.

export type PeerCredReader = (socket: Socket) => PeerCred | undefined;

interface Addon {
  peercred(fd: number): PeerCred;
}

function candidates(): string[] {
  const rel = "build/Release/peercred.node";
  const out: string[] = [];
  if (process.env.PLEXD_PEERCRED_ADDON !== undefined) out.push(process.env.PLEXD_PEERCRED_ADDON);
  // Beside this module (sources, vitest) or, from a bundle in dist/, in the source tree.
  out.push(fileURLToPath(new URL(`./peercred/${rel}`, import.meta.url)));
  out.push(fileURLToPath(new URL(`../agent/nodeapi/peercred/${rel}`, import.meta.url)));
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
