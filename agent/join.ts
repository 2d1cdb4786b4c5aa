import { readFile } from "node:fs/promises";
import { PlexdError } from "../proto/lib/errors.js";
import type { Config } from "./config/schema.js";
import { buildContext, establishIdentity, StartupConfigError } from "./system.js";
import { promptToken, validateToken, type ResolvedToken } from "./registration/token.js";
import type { Clock } from "./util/clock.js";
import type { Logger } from "./util/log.js";

// `plexd join`: register and exit (docs/operations.md). Token order: flags, then
// the sources, then a prompt without echo when stdin is a terminal.

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

export async function join(
  config: Config,
  log: Logger,
  clock: Clock,
  env: NodeJS.ProcessEnv,
  signal: AbortSignal,
  opts: { tokenFile?: string; tokenStdin?: boolean },
  json: boolean,
): Promise<number> {
  try {
    const ctx = await buildContext(config, log, clock, env);
    let explicitToken: ResolvedToken | undefined;
    if (opts.tokenFile !== undefined) explicitToken = { token: validateToken(await readFile(opts.tokenFile, "utf8"), "file"), source: "file", file: opts.tokenFile };
    else if (opts.tokenStdin === true) explicitToken = { token: validateToken(await readStdin(), "flag"), source: "flag" };
    const prompt = process.stdin.isTTY ? async (): Promise<ResolvedToken> => ({ token: validateToken(await promptToken(), "prompt"), source: "prompt" }) : undefined;
    const ensured = await establishIdentity(ctx, signal, {
      ...(explicitToken ? { explicitToken } : {}),
      // Without a terminal there is nobody to ask: fail instead of waiting forever.
      prompt: prompt ?? (() => Promise.reject(new PlexdError("not_found", "no bootstrap token found (token file, environment, metadata) and stdin is not a terminal"))),
    });
    ctx.priv.close();
    const out = { node_id: ensured.identity.nodeId, mesh_ip: ensured.identity.meshIp, registered: ensured.registered };
    process.stdout.write(json ? JSON.stringify(out) + "\n" : `${ensured.registered ? "registered" : "already registered"}: node ${out.node_id}, mesh IP ${out.mesh_ip}\n`);
    return 0;
  } catch (err) {
    const e = PlexdError.from(err);
    process.stderr.write(`plexd: ${e.message}\n`);
    return err instanceof StartupConfigError ? 2 : 1;
  }
}
