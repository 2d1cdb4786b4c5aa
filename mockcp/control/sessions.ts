import { randomBytes } from "node:crypto";
import { z } from "zod";
import { ApiError } from "../state/apierror.js";
import { parseBody } from "../state/validate.js";
import { reply, type ControlRoute } from "./match.js";

// Session tokens as the platform's access proxy hands them to SSH sessions (PLEXD_SESSION_TOKEN):
// JWTs signed with mockcp's signing key. Tests ask for valid ones and for every way one can be
// wrong (expired, issued in the future, too long-lived, signed by the retired key, other node).

const mintBody = z.object({
  node_id: z.string().min(1),
  actions: z.array(z.string()),
  session_id: z.string().min(1).optional(),
  sub: z.string().optional(),
  email: z.string().optional(),
  /** Lifetime from `iat`; default 1 h. */
  ttl_seconds: z.number().int().optional(),
  /** Seconds since the epoch; default now. */
  iat: z.number().int().optional(),
  iss: z.string().optional(),
  /** `previous`: the key the last rotation retired (404 when there is none). */
  key: z.enum(["current", "previous"]).default("current"),
});

export const sessionControlRoutes: ControlRoute[] = [
  {
    pattern: "POST session-tokens",
    handle: async ({ state }, ctx) => {
      const b = parseBody(mintBody, await ctx.body());
      const key = b.key === "previous" ? state.keys.previous : state.keys.signer(state.now());
      if (key === undefined) throw new ApiError(404, "no_previous_key", "no signing key was retired yet (rotate first)");
      const iat = b.iat ?? Math.floor(state.now() / 1000);
      const claims = {
        iss: b.iss ?? "plexsphere",
        sub: b.sub ?? "u_test",
        email: b.email ?? "operator@example.com",
        node_id: b.node_id,
        session_id: b.session_id ?? `sess_${randomBytes(6).toString("hex")}`,
        actions: b.actions,
        iat,
        exp: iat + (b.ttl_seconds ?? 3600),
      };
      reply(ctx, 201, { token: await key.signJwt(claims), claims });
    },
  },
];
