import type { z } from "zod";
import { badRequest } from "./apierror.js";

/** Wire grammars of control-plane §2.1 and §2.3, shared by every endpoint. */
export const rfc3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;
export const duration = /^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$/;
export const checksum = /^sha256:[0-9a-f]{64}$/;
export const hostPort = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;
export const keyName = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Validates `body` or throws 400 with every issue listed as `path: message`. */
export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  throw badRequest(r.error.issues.map((i) => `${i.path.join(".") || "(body)"}: ${i.message}`).join("; "));
}
