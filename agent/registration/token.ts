import { readFile } from "node:fs/promises";
import http from "node:http";
import { PlexdError } from "../../proto/lib/errors.js";

// Bootstrap token sources in the order of docs/architecture.md#lifecycle: file, environment
// variable, cloud metadata service. The first non-empty value wins.

export type TokenSource = "flag" | "file" | "env" | "metadata" | "prompt";

export interface ResolvedToken {
  token: string;
  source: TokenSource;
  /** Set when the token came from a file, so it can be removed after registration. */
  file?: string;
}

export interface TokenSourceOptions {
  file: string;
  envName: string;
  env: NodeJS.ProcessEnv;
  metadata: { enabled: boolean; path: string; timeoutMs: number; baseUrl?: string };
  signal?: AbortSignal;
}

/** Trimmed, 1..512 bytes of printable ASCII (0x20-0x7E), or an error naming the source. */
export function validateToken(raw: string, source: TokenSource): string {
  const token = raw.trim();
  if (token.length < 1 || token.length > 512 || !/^[\x20-\x7e]+$/.test(token)) {
    throw new PlexdError("invalid_argument", `bootstrap token from ${source} must be 1-512 printable ASCII characters`);
  }
  return token;
}

async function fromFile(path: string): Promise<string | undefined> {
  try {
    const text = await readFile(path, "utf8");
    return text.trim() === "" ? undefined : text;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    throw new PlexdError(code === "EACCES" ? "permission_denied" : "internal", `bootstrap token file ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** Cloud metadata services answer plain HTTP on a link-local address; any failure means "no token here". */
function fromMetadata(opts: TokenSourceOptions["metadata"], signal?: AbortSignal): Promise<string | undefined> {
  const url = new URL(opts.path, opts.baseUrl ?? "http://169.254.169.254");
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: opts.timeoutMs, headers: { "Metadata-Flavor": "Google", Metadata: "true" }, ...(signal ? { signal } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve(res.statusCode === 200 && text.trim() !== "" ? text : undefined);
      });
      res.on("error", () => resolve(undefined));
    });
    req.on("timeout", () => {
      req.destroy();
      resolve(undefined);
    });
    req.on("error", () => resolve(undefined));
  });
}

export async function resolveBootstrapToken(opts: TokenSourceOptions): Promise<ResolvedToken | undefined> {
  const file = await fromFile(opts.file);
  if (file !== undefined) return { token: validateToken(file, "file"), source: "file", file: opts.file };
  const envValue = opts.env[opts.envName];
  if (envValue !== undefined && envValue.trim() !== "") return { token: validateToken(envValue, "env"), source: "env" };
  if (opts.metadata.enabled) {
    const meta = await fromMetadata(opts.metadata, opts.signal);
    if (meta !== undefined) return { token: validateToken(meta, "metadata"), source: "metadata" };
  }
  return undefined;
}

/** Reads a token from the terminal without echoing it (plexd join). */
export function promptToken(input: NodeJS.ReadStream = process.stdin, output: NodeJS.WriteStream = process.stderr): Promise<string> {
  if (!input.isTTY) return Promise.reject(new PlexdError("failed_precondition", "no bootstrap token found and stdin is not a terminal"));
  output.write("Bootstrap token: ");
  input.setRawMode(true);
  input.resume();
  let value = "";
  return new Promise((resolve, reject) => {
    const done = (err?: Error): void => {
      input.setRawMode(false);
      input.pause();
      input.off("data", onData);
      output.write("\n");
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (buf: Buffer): void => {
      for (const ch of buf.toString("utf8")) {
        if (ch === "\r" || ch === "\n") return done();
        if (ch === "\u0003") return done(new PlexdError("cancelled", "interrupted"));
        if (ch === "\u007f" || ch === "\b") value = value.slice(0, -1);
        else value += ch;
      }
    };
    input.on("data", onData);
  });
}
