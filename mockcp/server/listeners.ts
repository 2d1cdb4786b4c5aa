import { chmod, unlink } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { parseIp } from "../../proto/lib/net.js";
import { isAbsolute } from "node:path";
import { PlexdError } from "../../proto/lib/errors.js";
import type { Handler } from "./app.js";
import type { Pem } from "./tls.js";

export type ListenSpec =
  | { kind: "http" | "https"; host: string; port: number }
  | { kind: "unix"; path: string };

/** Parses `http://HOST:PORT`, `https://HOST:PORT` or `unix:/abs/path.sock`. */
export function parseListen(spec: string): ListenSpec {
  if (spec.startsWith("unix:")) {
    const path = spec.slice("unix:".length).replace(/^\/\/(?=\/)/, "");
    if (!isAbsolute(path)) throw new PlexdError("invalid_argument", `--listen ${spec}: unix socket path must be absolute`);
    return { kind: "unix", path };
  }
  let url: URL;
  try {
    url = new URL(spec);
  } catch {
    throw new PlexdError("invalid_argument", `--listen ${spec}: expected http://HOST:PORT, https://HOST:PORT or unix:/abs/path.sock`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new PlexdError("invalid_argument", `--listen ${spec}: unsupported scheme ${url.protocol}`);
  if (url.pathname !== "/" || url.search !== "") throw new PlexdError("invalid_argument", `--listen ${spec}: no path allowed`);
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = url.port === "" ? (url.protocol === "https:" ? 443 : 80) : Number(url.port);
  return { kind: url.protocol === "https:" ? "https" : "http", host, port };
}

export function hostOfUrl(host: string): string {
  return parseIp(host)?.family === 6 ? `[${host}]` : host;
}

export interface BoundListener {
  spec: ListenSpec;
  /** The URL clients use; for port 0 it carries the port actually bound. */
  url: string;
  server: http.Server;
}

/** Binds one listener; resolves once it accepts connections. */
export async function bindListener(spec: ListenSpec, app: Handler, tls: Pem | undefined): Promise<BoundListener> {
  const server =
    spec.kind === "https"
      ? https.createServer({ cert: tls?.cert, key: tls?.key, minVersion: "TLSv1.2" }, app)
      : http.createServer(app);
  // SSE responses live for hours; only header and request-body timing should be bounded.
  server.requestTimeout = 60_000;
  server.keepAliveTimeout = 65_000;
  if (spec.kind === "unix") await unlink(spec.path).catch(() => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    if (spec.kind === "unix") server.listen(spec.path, resolve);
    else server.listen(spec.port, spec.host, resolve);
  });
  if (spec.kind === "unix") {
    // Tests in other namespaces or as other users reach the control API through this file.
    await chmod(spec.path, 0o666);
    return { spec, url: `unix:${spec.path}`, server };
  }
  const port = (server.address() as AddressInfo).port;
  return { spec, url: `${spec.kind}://${hostOfUrl(spec.host)}:${port}`, server };
}

/** Stops accepting, ends idle keep-alive connections and force-closes the rest. */
export async function closeListener(l: BoundListener): Promise<void> {
  const closed = new Promise<void>((resolve) => l.server.close(() => resolve()));
  l.server.closeIdleConnections();
  l.server.closeAllConnections();
  await closed;
  if (l.spec.kind === "unix") await unlink(l.spec.path).catch(() => undefined);
}
