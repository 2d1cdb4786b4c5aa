import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "./log.js";

describe("createLogger", () => {
  it("redacts secrets with proto/lib's list", () => {
    const chunks: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        chunks.push(chunk.toString());
        done();
      },
    });
    createLogger({ name: "t", destination: sink }).info({ body: { identity_token: "S3CRET" }, peer_id: "n_a" }, "x");
    const line = JSON.parse(chunks.join("")) as { body: { identity_token: string }; peer_id: string };
    expect(line.body.identity_token).toBe("[redacted]");
    expect(line.peer_id).toBe("n_a");
  });
});
