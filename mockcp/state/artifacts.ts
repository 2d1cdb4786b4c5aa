import { createHash } from "node:crypto";
import { ApiError } from "./apierror.js";

export interface ArtifactInfo {
  version: string;
  os: string;
  arch: string;
  size: number;
  checksum: string;
  uploaded_at: string;
  downloads: number;
}

const slot = (version: string, os: string, arch: string): string => `${version}/${os}/${arch}`;

/** plexd binaries served on GET /v1/artifacts/plexd/..., uploaded through the control API. */
export class ArtifactStore {
  readonly #items = new Map<string, { info: ArtifactInfo; bytes: Buffer }>();
  readonly #now: () => number;

  constructor(now: () => number) {
    this.#now = now;
  }

  put(version: string, os: string, arch: string, bytes: Buffer): ArtifactInfo {
    const info: ArtifactInfo = {
      version,
      os,
      arch,
      size: bytes.length,
      checksum: `sha256:${createHash("sha256").update(bytes).digest("hex")}`,
      uploaded_at: new Date(this.#now()).toISOString(),
      downloads: 0,
    };
    this.#items.set(slot(version, os, arch), { info, bytes });
    return info;
  }

  /** The bytes for a download (counted), or 404 for an unknown version or platform. */
  download(version: string, os: string, arch: string): Buffer {
    const item = this.#items.get(slot(version, os, arch));
    if (item === undefined) throw new ApiError(404, "artifact_not_found", `no plexd ${version} for ${os}/${arch}`);
    item.info.downloads++;
    return item.bytes;
  }

  delete(version: string, os: string, arch: string): boolean {
    return this.#items.delete(slot(version, os, arch));
  }

  list(): ArtifactInfo[] {
    return [...this.#items.values()].map((i) => ({ ...i.info }));
  }
}
