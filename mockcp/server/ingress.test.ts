import { X509Certificate } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { cleanup, nextEvent, openStream, registerNode, startCp } from "../../test/support/mockcp-testkit.js";

afterEach(cleanup);

describe("ingress rules (control API → bridge)", () => {
  it("issues the rule's certificate from its CA, pushes assign/revoke and serves ingress_config in the state", async () => {
    const { client } = await startCp();
    const bridge = await registerNode(client, "bridge");
    const stream = await openStream(client, bridge);
    const state = async () => (await client.request<Record<string, unknown>>("GET", `/v1/nodes/${bridge.node_id}/state`, { token: bridge.identity_token })).body;
    // Never given ingress rules: the block is absent (the bridge leaves ingress as it is).
    expect(await state()).not.toHaveProperty("ingress_config");

    const set = await client.setIngressRule(bridge.node_id, "web", { listen_port: 443, target_addr: "10.100.0.5:8443", mode: "terminate", sni: "web.example.test", issue_cert: ["web.example.test"] });
    const ev = await nextEvent(stream);
    expect(ev.type).toBe("ingress_rule_assigned");
    expect(ev.payload).toMatchObject({ rule_id: "web", listen_port: 443, target_addr: "10.100.0.5:8443", mode: "terminate", sni: "web.example.test" });
    const cert = new X509Certificate(ev.payload.cert_pem as string);
    expect(cert.subjectAltName).toBe("DNS:web.example.test");
    expect(cert.verify(new X509Certificate(set.ca_pem).publicKey)).toBe(true);
    expect(ev.payload.key_pem).toMatch(/PRIVATE KEY/);
    // The control API's views never show the key.
    expect(JSON.stringify(set.rules)).not.toContain("PRIVATE KEY");
    expect(set.rules[0]).toMatchObject({ rule_id: "web", has_key: true });
    expect(await state()).toMatchObject({ ingress_config: { rules: [{ rule_id: "web", cert_pem: ev.payload.cert_pem, key_pem: ev.payload.key_pem }] } });

    await client.removeIngressRule(bridge.node_id, "web");
    expect(await nextEvent(stream)).toMatchObject({ type: "ingress_rule_revoked", payload: { rule_id: "web" } });
    // Revoked to none: the block stays, empty, so the bridge converges to no rules.
    expect(await state()).toMatchObject({ ingress_config: { rules: [] } });
  });
});
