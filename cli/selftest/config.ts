import { readFile } from "node:fs/promises";

// The few configuration keys self-test needs, read without the agent's validation (the CLI
// does not load agent code): a host may be checked before its configuration is complete.

export interface SelfTestConfig {
  configFile: string;
  /** Whether the file could be read; `problem` says why not. */
  readable: boolean;
  problem?: string;
  api?: string;
  caFile?: string;
  dataDir: string;
  tokenFile: string;
  nodeApiSocket: string;
  privSocket: string;
  meshInterface: string;
}

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : {});
const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);

export async function readSelfTestConfig(file: string, apiOverride?: string): Promise<SelfTestConfig> {
  let doc: Obj = {};
  let readable = true;
  let problem: string | undefined;
  try {
    const { parse } = await import("yaml");
    doc = obj(parse(await readFile(file, "utf8")));
  } catch (err) {
    readable = false;
    problem = (err as Error).message;
  }
  const api = apiOverride ?? str(doc.api);
  const caFile = str(obj(doc.control_plane).ca_file);
  return {
    configFile: file,
    readable,
    ...(problem !== undefined ? { problem } : {}),
    ...(api !== undefined ? { api } : {}),
    ...(caFile !== undefined ? { caFile } : {}),
    dataDir: str(doc.data_dir) ?? "/var/lib/plexd",
    tokenFile: str(obj(doc.token).file) ?? "/etc/plexd/bootstrap-token",
    nodeApiSocket: str(obj(doc.node_api).socket) ?? "/run/plexd/api.sock",
    privSocket: str(obj(doc.privhelper).socket) ?? "/run/plexd-priv/privhelper.sock",
    meshInterface: str(obj(doc.mesh).interface) ?? "plexd0",
  };
}
