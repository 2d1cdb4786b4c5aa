import { readFile, stat } from "node:fs/promises";
import { PlexdError } from "../../proto/lib/errors.js";
import { formatIssue } from "../config/config-error.js";

// The bearer tokens of the node API's loopback TCP listener (docs/node-api.md) live in
// files. The reader token may be shared with group plexd (root:plexd 0640, like the config),
// the members of that group are readers on the unix socket anyway. The secrets token must not:
// a group member who could read it would get over TCP exactly the secrets the unix socket
// refuses them. So the secrets token file must belong to the agent's user (or root) and grant
// nothing to group or others.

const octal = (mode: number): string => (mode & 0o7777).toString(8).padStart(4, "0");

/** Reader token: any owner; refused when world-readable or empty. */
export async function readReaderTokenFile(path: string): Promise<string> {
  const st = await stat(path);
  if ((st.mode & 0o004) !== 0) throw new PlexdError("failed_precondition", `${path} is world-readable; node API tokens must not be`);
  return readToken(path);
}

/**
 * Why a secrets token file with this owner and mode must not be trusted, or undefined when it
 * may be: owner `agentUid` or root, and no permission bits for group or others.
 */
export function secretsTokenFileProblem(path: string, st: { uid: number; mode: number }, agentUid: number): string | undefined {
  const ownerOk = st.uid === agentUid || st.uid === 0;
  if (ownerOk && (st.mode & 0o077) === 0) return undefined;
  return `${path} has owner uid ${st.uid} and mode ${octal(st.mode)}; the secrets token file must be owned by the agent's user (uid ${agentUid}) or root and grant nothing to group or others (chown it to the agent's user, chmod 0600)`;
}

export type SecretsTokenResult = { ok: true; token: string } | { ok: false; issue: string };

/**
 * Reads the secrets token when its file is the agent's alone. A refusal comes back as one
 * config-style line (`key path: problem`); the caller decides what it disables.
 */
export async function readSecretsTokenFile(path: string, keyPath: string, agentUid = process.getuid?.() ?? 0): Promise<SecretsTokenResult> {
  const issue = (message: string): SecretsTokenResult => ({ ok: false, issue: formatIssue({ path: keyPath, message }) });
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    return issue(`${path} cannot be read: ${PlexdError.from(err).message}`);
  }
  const problem = secretsTokenFileProblem(path, st, agentUid);
  if (problem !== undefined) return issue(problem);
  try {
    return { ok: true, token: await readToken(path) };
  } catch (err) {
    return issue(PlexdError.from(err).message);
  }
}

async function readToken(path: string): Promise<string> {
  const token = (await readFile(path, "utf8")).trim();
  if (token === "") throw new PlexdError("failed_precondition", `${path} is empty`);
  return token;
}
