import type { IncomingMessage, ServerResponse } from "node:http";
import { gunzip, gzipSync } from "node:zlib";
import { promisify } from "node:util";
import { ApiError, badRequest } from "../state/apierror.js";
import { keyName } from "../state/validate.js";

const gunzipAsync = promisify(gunzip);

/** What a handler gets: the parsed request plus a respond() that also feeds the request log. */
export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  method: string;
  path: string;
  query: URLSearchParams;
  /** Decoded path segments. */
  segments: string[];
  /** Lazily read body: parsed JSON, text for non-JSON types, undefined when empty. */
  body(): Promise<unknown>;
  /** The same body as bytes (after gunzip) with its wire size; shares the read with body(). */
  raw(): Promise<RawBody>;
}

/** A request body as received: decoded bytes plus what the wire carried. */
export interface RawBody {
  /** After gunzip. */
  bytes: Buffer;
  wireBytes: number;
  gzip: boolean;
}

/**
 * Reads a request body, honouring `Content-Encoding: gzip` (the CP
 * accepts gzip on every endpoint). Both the wire size and the decompressed size are capped,
 * so a gzip bomb gets 413 instead of eating memory.
 */
export async function readRawBody(req: IncomingMessage, maxBytes: number): Promise<RawBody> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new ApiError(413, "body_too_large", `request body larger than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  let raw = Buffer.concat(chunks);
  const encoding = (req.headers["content-encoding"] ?? "identity").toLowerCase().trim();
  const gzip = encoding === "gzip" || encoding === "x-gzip";
  if (gzip) {
    try {
      raw = await gunzipAsync(raw, { maxOutputLength: maxBytes });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") {
        throw new ApiError(413, "body_too_large", `decompressed body larger than ${maxBytes} bytes`);
      }
      throw badRequest("body is not valid gzip");
    }
  } else if (encoding !== "identity" && encoding !== "") {
    throw new ApiError(415, "unsupported_encoding", `unsupported Content-Encoding ${encoding}`);
  }
  return { bytes: raw, wireBytes: size, gzip };
}

/** Parses decoded body bytes: JSON for JSON types (or always), text otherwise, undefined when empty. */
export function parseBodyBytes(req: IncomingMessage, raw: Buffer, alwaysJson = false): unknown {
  if (raw.length === 0) return undefined;
  const text = raw.toString("utf8");
  const type = (req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  if (alwaysJson || type === "application/json" || type === "" || type.endsWith("+json")) {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new ApiError(400, "invalid_json", "request body is not valid JSON");
    }
  }
  return text;
}

/** readRawBody then parseBodyBytes. */
export async function readBody(req: IncomingMessage, maxBytes: number, alwaysJson = false): Promise<unknown> {
  return parseBodyBytes(req, (await readRawBody(req, maxBytes)).bytes, alwaysJson);
}

/** Writes a JSON response, gzipped when the client accepts it and the body is worth it. */
export function sendJson(req: IncomingMessage, res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  let buf = Buffer.from(JSON.stringify(body ?? {}), "utf8");
  const out: Record<string, string | number> = { "content-type": "application/json", ...headers };
  if (buf.length > 1024 && /\bgzip\b/.test(req.headers["accept-encoding"] ?? "")) {
    buf = gzipSync(buf);
    out["content-encoding"] = "gzip";
    out["vary"] = "accept-encoding";
  }
  out["content-length"] = buf.length;
  res.writeHead(status, out);
  res.end(buf);
}

export function errorBody(err: unknown): { status: number; body: Record<string, unknown> } {
  if (err instanceof ApiError) return { status: err.status, body: { error: err.error, message: err.message, ...err.extra } };
  return { status: 500, body: { error: "internal", message: err instanceof Error ? err.message : String(err) } };
}

/** Splits a path into decoded segments; a bad percent-escape is a 400. */
export function splitPath(path: string): string[] {
  try {
    return path.split("/").filter((s) => s !== "").map((s) => decodeURIComponent(s));
  } catch {
    throw badRequest("path contains an invalid percent-escape");
  }
}

/** Key names in paths (secrets, data, report entries; docs/mockcp.md). */
export function checkKeyName(key: string): string {
  if (!keyName.test(key)) throw badRequest(`invalid key name ${JSON.stringify(key)}`);
  return key;
}

/** 405 unless the request uses `method`. */
export function requireMethod(ctx: RequestContext, method: string): void {
  if (ctx.method !== method) throw new ApiError(405, "method_not_allowed", `${ctx.method} is not allowed on ${ctx.path}`);
}

/** Base media type of the request, lower-cased, without parameters. */
export function mediaType(ctx: RequestContext): string {
  return (ctx.req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
}
