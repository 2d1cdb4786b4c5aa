import { z } from "zod";
import { parseBody } from "../state/validate.js";
import { queryPush, reply, type ControlRoute } from "./match.js";

// Control routes for bridge ingress rules (docs/mockcp.md#ingress). `issue_cert` asks mockcp to
// issue the rule's certificate for those names from its CA; the reply carries that CA (`ca_pem`)
// so a test can trust it. Everything else of the rule is passed on as given.
const ruleBody = z
  .object({
    listen_port: z.number().int().optional(),
    target_addr: z.string().optional(),
    mode: z.string().optional(),
    sni: z.string().optional(),
    cert_pem: z.string().optional(),
    key_pem: z.string().optional(),
    issue_cert: z.array(z.string().min(1)).min(1).optional(),
    push: z.boolean().default(true),
  })
  .loose();

export const ingressControlRoutes: ControlRoute[] = [
  {
    pattern: "GET nodes/:id/ingress-rules",
    handle: ({ state }, ctx, p) => reply(ctx, 200, { rules: state.ingress.view(state.nodeOr404(p["id"] ?? "").id), ca_pem: state.ingress.caPem }),
  },
  {
    pattern: "PUT nodes/:id/ingress-rules/:rule",
    handle: async ({ state }, ctx, p) => {
      const n = state.nodeOr404(p["id"] ?? "");
      const { issue_cert, push, ...fields } = parseBody(ruleBody, await ctx.body());
      const rule = { ...fields, rule_id: p["rule"] ?? "" };
      if (issue_cert !== undefined) {
        const pem = state.ingress.issue(issue_cert);
        Object.assign(rule, { cert_pem: pem.cert, key_pem: pem.key });
      }
      state.ingress.set(n.id, rule);
      const ev = push ? state.publish(n.id, "ingress_rule_assigned", rule) : undefined;
      reply(ctx, 200, { rules: state.ingress.view(n.id), ca_pem: state.ingress.caPem, event_id: ev?.event_id ?? null });
    },
  },
  {
    pattern: "DELETE nodes/:id/ingress-rules/:rule",
    handle: ({ state }, ctx, p) => {
      const n = state.nodeOr404(p["id"] ?? "");
      const ruleId = p["rule"] ?? "";
      state.ingress.remove(n.id, ruleId);
      const ev = queryPush(ctx) ? state.publish(n.id, "ingress_rule_revoked", { rule_id: ruleId }) : undefined;
      reply(ctx, 200, { rules: state.ingress.view(n.id), event_id: ev?.event_id ?? null });
    },
  },
];
