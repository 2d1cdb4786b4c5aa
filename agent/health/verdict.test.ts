import { describe, expect, it } from "vitest";
import { healthVerdict } from "./verdict.js";

describe("healthVerdict", () => {
  it("is healthy with info conditions only, degraded with a warning, unhealthy with a critical one", () => {
    expect(healthVerdict([])).toBe("healthy");
    expect(healthVerdict([{ severity: "info" }])).toBe("healthy");
    expect(healthVerdict([{ severity: "info" }, { severity: "warning" }])).toBe("degraded");
    expect(healthVerdict([{ severity: "warning" }, { severity: "critical" }])).toBe("unhealthy");
  });
});
