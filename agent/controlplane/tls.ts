import tls from "node:tls";

// TLS settings of every control-plane connection (requests and the event stream).
//
// A `ca` option replaces Node's roots, so the configured bundle is added to them — and a
// context built from that list parses all ~140 root certificates into a store of its own:
// ~1 MB of native memory and a few ms of CPU. Given as `ca` in request options, that happens
// per connection (every heartbeat that opens a socket, every stream reconnect), and each
// context's native memory lives until a GC happens to free its small JS wrapper. One context
// per CA bundle, shared, costs it once.

const contexts = new Map<string, tls.SecureContext>();

/** Options for https.request / https.Agent: TLS 1.2+, Node's roots plus `ca` when given. */
export function cpTlsOptions(ca: string | Buffer | undefined): { minVersion: "TLSv1.2" } | { secureContext: tls.SecureContext } {
  if (ca === undefined) return { minVersion: "TLSv1.2" };
  const key = ca.toString();
  let context = contexts.get(key);
  if (context === undefined) {
    context = tls.createSecureContext({ minVersion: "TLSv1.2", ca: [...tls.rootCertificates, key] });
    contexts.set(key, context);
  }
  return { secureContext: context };
}
