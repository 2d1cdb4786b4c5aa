import { describe, expect, it } from "vitest";
import { judgeMode } from "./files.js";
import { classifyPorts } from "./host.js";
import { checkNames } from "./index.js";
import { classifyClock } from "./net.js";
import { toJson, toTable, verdictExitCodes, verdictOf, type CheckResult } from "./verdict.js";

const r = (status: CheckResult["status"], name = "x"): CheckResult => ({ name, status, detail: "" });

describe("self-test verdict", () => {
  it("is not ready on any fail, degraded on any warn, ready otherwise", () => {
    expect(verdictOf([r("ok"), r("ok")])).toBe("ready");
    expect(verdictOf([r("ok"), r("warn")])).toBe("degraded");
    expect(verdictOf([r("warn"), r("fail"), r("ok")])).toBe("not_ready");
    expect(verdictOf([])).toBe("ready");
    expect(verdictExitCodes).toEqual({ ready: 0, degraded: 1, not_ready: 2 });
  });

  it("prints every check in JSON and in the table, with the verdict", () => {
    const results = [r("ok", "wireguard"), r("fail", "tun")];
    expect(JSON.parse(toJson(results))).toEqual({ verdict: "not_ready", checks: results });
    const table = toTable(results);
    expect(table).toMatch(/^wireguard\s+ok/m);
    expect(table).toMatch(/^tun\s+fail/m);
    expect(table).toMatch(/verdict: not ready \(exit 2\)/);
  });

  it("names thirteen checks, each once", () => {
    expect(new Set(checkNames).size).toBe(13);
  });
});

describe("self-test clock", () => {
  it("is ok within 30 s, degraded up to 300 s, not ready beyond, either direction", () => {
    expect(classifyClock(0.4).status).toBe("ok");
    expect(classifyClock(-30).status).toBe("ok");
    expect(classifyClock(31).status).toBe("warn");
    expect(classifyClock(-300).status).toBe("warn");
    expect(classifyClock(301).status).toBe("fail");
    expect(classifyClock(-4000).detail).toMatch(/behind the control plane by 4000.0 s/);
  });
});

describe("self-test UDP ports", () => {
  it("a busy mesh port is fatal unless plexd itself holds it; a busy bridge port degrades", () => {
    expect(classifyPorts([], false).status).toBe("ok");
    expect(classifyPorts([51820], false).status).toBe("fail");
    expect(classifyPorts([51820, 51821], true).status).toBe("ok");
    expect(classifyPorts([51822], false).status).toBe("warn");
  });
});

describe("self-test file modes", () => {
  const token = { path: "/etc/plexd/bootstrap-token", uid: 0, gid: 995, mode: 0o640, secret: true };
  const config = { ...token, path: "/etc/plexd/config.yaml", secret: false };
  it("accepts the exact owner and mode", () => {
    expect(judgeMode(token, { uid: 0, gid: 995, mode: 0o100640 })).toBeUndefined();
  });
  it("fails a secret readable by others, a wrong owner or group, and missing bits", () => {
    expect(judgeMode(token, { uid: 0, gid: 995, mode: 0o644 })?.status).toBe("fail");
    expect(judgeMode(token, { uid: 1000, gid: 995, mode: 0o640 })?.detail).toMatch(/owner uid 1000, expected 0/);
    expect(judgeMode(token, { uid: 0, gid: 0, mode: 0o640 })?.status).toBe("fail");
    expect(judgeMode(token, { uid: 0, gid: 995, mode: 0o600 })?.detail).toMatch(/lacks bits/);
  });
  it("only degrades a non-secret file readable by others, but fails one writable by them", () => {
    expect(judgeMode(config, { uid: 0, gid: 995, mode: 0o644 })?.status).toBe("warn");
    expect(judgeMode(config, { uid: 0, gid: 995, mode: 0o662 })?.status).toBe("fail");
  });
});
