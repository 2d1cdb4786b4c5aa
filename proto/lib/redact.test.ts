import { Writable } from "node:stream";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { redactCensor, redactOptions, secretFields } from "./redact.js";

function capture(extra?: string[]): { log: pino.Logger; text: () => string } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  return { log: pino({ redact: redactOptions(extra) }, sink), text: () => chunks.join("") };
}

describe("redaction", () => {
  it("hides every secret field at any depth pino is asked about, and in peer lists", () => {
    const { log, text } = capture();
    const s = "S3CRET-canary";
    log.info(
      {
        token: s,
        body: { identity_token: s, node_secret_key: s, nested: { psk: s, deeper: { privateKey: s } } },
        spec: { privateKey: s, peers: [{ publicKey: "pub", presharedKey: s }, { presharedKey: s }] },
        peers: [{ psk: s, id: "n_a" }],
        headers: { Authorization: `Bearer ${s}` },
        entry: { key: "app-config", value: s },
      },
      "request",
    );
    const out = text();
    expect(out).not.toContain(s);
    expect(out).toContain(redactCensor);
    // What is not secret stays readable.
    for (const kept of ['"publicKey":"pub"', '"id":"n_a"', '"key":"app-config"']) expect(out).toContain(kept);
  });

  it("takes fields that are secret only in one process", () => {
    const { log, text } = capture(["key"]);
    log.info({ req: { key: "S3CRET" } });
    expect(text()).not.toContain("S3CRET");
    expect(secretFields).not.toContain("key");
  });
});
