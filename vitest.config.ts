import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["agent/**/*.test.ts", "privhelper/**/*.test.ts", "cli/**/*.test.ts", "mockcp/**/*.test.ts", "proto/lib/**/*.test.ts", "test/unit/**/*.test.ts", "test/fuzz/**/*.test.ts"],
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts", "test/interop/**/*.test.ts"],
          // PLEXD_E2E_STRESS=1: one CPU hog per core for the whole run (docs/testing.md).
          globalSetup: ["test/e2e/stress/global-setup.ts"],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
          pool: "forks",
        },
      },
    ],
  },
});
