import { z } from "zod";
import { isWireDuration, parseTimestamp } from "../../proto/lib/duration.js";
import { parseIpEndpoint } from "../../proto/lib/net.js";
import { badRequest } from "./apierror.js";

/** Wire grammars (key names, durations, timestamps), shared by every endpoint; the parsers are proto/lib's. */
export const timestamp = () => z.string().refine((s) => parseTimestamp(s) !== undefined, "must be an RFC 3339 timestamp");
export const duration = (example: string) => z.string().refine(isWireDuration, `must be a duration such as ${example}`);
/** `ip:port` or `[v6]:port`, kept in canonical form. */
export const ipEndpoint = () =>
  z.string().transform((s, ctx) => {
    const canonical = parseIpEndpoint(s);
    if (canonical === undefined) {
      ctx.issues.push({ code: "custom", input: s, message: "must be IP:port with a port 1–65535" });
      return z.NEVER;
    }
    return canonical;
  });
export const checksum = /^sha256:[0-9a-f]{64}$/;
export const keyName = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Validates `body` or throws 400 with every issue listed as `path: message`. */
export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  throw badRequest(r.error.issues.map((i) => `${i.path.join(".") || "(body)"}: ${i.message}`).join("; "));
}
