import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { realpath } from "node:fs/promises";

/** `sha256:<hex>` of a file, streamed so large artifacts don't sit in memory. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest("hex")}`;
}

/** The artifact this process runs from (the bundle passed to node), by its real path. */
export async function ownArtifact(): Promise<string> {
  return realpath(process.argv[1] ?? process.execPath);
}

export async function ownChecksum(): Promise<string> {
  return sha256File(await ownArtifact());
}
