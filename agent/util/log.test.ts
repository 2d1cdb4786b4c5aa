import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger, logDestination } from "./log.js";

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

  describe("logDestination", () => {
    const written = (env: NodeJS.ProcessEnv, isTTY: boolean): string => {
      const dir = mkdtempSync(join(tmpdir(), "plexd-log-"));
      const fd = openSync(join(dir, "out"), "w", 0o600);
      try {
        createLogger({ name: "plexd", destination: logDestination(env, isTTY, fd) }).info({ body: { identity_token: "S3CRET" }, peer_id: "n_a" }, "mesh applied");
        return readFileSync(join(dir, "out"), "utf8");
      } finally {
        closeSync(fd);
        rmSync(dir, { recursive: true, force: true });
      }
    };

    it("a terminal gets readable lines, without colour under NO_COLOR, secrets still redacted", () => {
      const out = written({ NO_COLOR: "1" }, true);
      expect(out).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO \(plexd\): mesh applied\n/);
      expect(out).toContain('peer_id: "n_a"');
      expect(out).not.toContain("S3CRET");
      expect(out).not.toContain("\u001b[");
    });

    it("JSON when not a terminal, and with PLEXD_LOG_FORMAT=json on one", () => {
      for (const out of [written({}, false), written({ PLEXD_LOG_FORMAT: "json" }, true)]) {
        expect(JSON.parse(out)).toMatchObject({ msg: "mesh applied", peer_id: "n_a", body: { identity_token: "[redacted]" } });
      }
    });

    it("PLEXD_LOG_FORMAT=pretty renders lines also into a pipe or file", () => {
      expect(written({ PLEXD_LOG_FORMAT: "pretty" }, false)).toContain("INFO (plexd): mesh applied");
    });
  });
});
