import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { rename, rm } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import { pipeline } from "node:stream/promises";
import { Transform } from "node:stream";
import { PlexdError } from "../../proto/lib/errors.js";
import type { CpClient } from "../controlplane/http.js";

// A release download for service.upgrade (docs/actions.md "Upgrades"): streamed to disk and
// hashed on the way, never held in memory (the control-plane client buffers JSON bodies and
// caps them at 10 MiB). The file is written as `<dest>.part` (0600) and renamed to `dest` only
// when its SHA-256 is the one asked for; on any failure nothing is left behind.

export const maxArtifactBytes = 256 * 1024 * 1024;

export interface Download {
  cp: CpClient;
  /** e.g. /v1/artifacts/plexd/1.5.0/linux/amd64 */
  path: string;
  token: string;
  dest: string;
  /** sha256:<hex> the bytes must have. */
  checksum: string;
  connectTimeoutMs: number;
  signal: AbortSignal;
}

export async function downloadVerified(d: Download): Promise<{ size: number }> {
  const url = new URL(d.path.replace(/^\//, ""), d.cp.baseUrl.href.endsWith("/") ? d.cp.baseUrl : new URL(d.cp.baseUrl.href + "/"));
  const mod = url.protocol === "https:" ? https : http;
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = mod.get(url, { agent: d.cp.agentFor(), headers: { Authorization: `Bearer ${d.token}`, Accept: "application/octet-stream" }, timeout: d.connectTimeoutMs, signal: d.signal }, resolve);
    req.on("timeout", () => req.destroy(new PlexdError("deadline_exceeded", `GET ${d.path}: connect timeout`)));
    req.on("error", (err) => reject(d.signal.aborted ? new PlexdError("cancelled", "download cancelled") : PlexdError.from(err)));
  });
  if (res.statusCode !== 200) {
    res.resume();
    if (res.statusCode === 404) throw new PlexdError("not_found", `GET ${d.path}: the control plane has no such artifact (404)`);
    throw new PlexdError("unavailable", `GET ${d.path}: HTTP ${res.statusCode ?? 0}`);
  }
  const hash = createHash("sha256");
  let size = 0;
  const count = new Transform({
    transform(chunk: Buffer, _enc, done) {
      size += chunk.length;
      if (size > maxArtifactBytes) return done(new PlexdError("resource_exhausted", `GET ${d.path}: larger than ${maxArtifactBytes} bytes`));
      hash.update(chunk);
      done(null, chunk);
    },
  });
  const part = `${d.dest}.part`;
  try {
    await pipeline(res, count, createWriteStream(part, { mode: 0o600 }), { signal: d.signal });
    const actual = `sha256:${hash.digest("hex")}`;
    if (actual !== d.checksum) throw new PlexdError("data_loss", `checksum mismatch: the downloaded artifact is ${actual}, the request asked for ${d.checksum}; download discarded, nothing installed`);
    await rename(part, d.dest);
    return { size };
  } catch (err) {
    await rm(part, { force: true });
    throw err;
  }
}
