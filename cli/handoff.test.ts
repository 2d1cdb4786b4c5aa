import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { agentV8Flags, isHandOff } from "./handoff.js";

describe("agentV8Flags", () => {
  it("are plexd-agent.js's own, so the agent runs alike however it is started", () => {
    const shipped = JSON.parse(readFileSync(new URL("../scripts/node-flags.json", import.meta.url), "utf8")) as Record<string, string[]>;
    expect(shipped["plexd-agent"]).toEqual(agentV8Flags);
    expect(shipped.plexd).toBeUndefined(); // every CLI command would pay for them
  });
});

describe("isHandOff", () => {
  it("hands the agent's commands over, after global options and their values", () => {
    expect(isHandOff(["up"])).toBe(true);
    expect(isHandOff(["up", "--config", "/etc/plexd/config.yaml"])).toBe(true);
    expect(isHandOff(["--config", "/x/up.yaml", "--log-level", "debug", "up"])).toBe(true);
    expect(isHandOff(["-o", "json", "join", "--token-stdin"])).toBe(true);
    expect(isHandOff(["config", "check", "/tmp/c.yaml"])).toBe(true);
  });

  it("keeps client commands, help, version and bare `config` in the CLI", () => {
    expect(isHandOff([])).toBe(false);
    expect(isHandOff(["status"])).toBe(false);
    expect(isHandOff(["--config", "up", "status"])).toBe(false); // "up" is the value of --config
    expect(isHandOff(["peers", "up"])).toBe(false);
    expect(isHandOff(["config"])).toBe(false);
    // deregister asks a running agent first; the CLI hands over only when none answers.
    expect(isHandOff(["--socket=/run/x.sock", "deregister", "--force"])).toBe(false);
    expect(isHandOff(["up", "--help"])).toBe(false);
    expect(isHandOff(["--version"])).toBe(false);
    expect(isHandOff(["--", "up"])).toBe(false);
  });
});
