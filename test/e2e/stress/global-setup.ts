import { availableParallelism } from "node:os";
import { startCpuHogs } from "./cpu-hog.js";

// vitest globalSetup of the e2e project: with PLEXD_E2E_STRESS=1 the whole run shares the
// machine with one busy loop per core, so races that only show under load show here.
// Teardown ends the hogs after the run, also a failed one; an interrupted runner ends them
// through the exit handler, and a killed one through the hogs' own parent check.

export default async function setup(): Promise<(() => Promise<void>) | undefined> {
  const flag = process.env.PLEXD_E2E_STRESS;
  if (flag === undefined || flag === "" || flag === "0") return undefined;
  if (flag !== "1") throw new Error(`PLEXD_E2E_STRESS must be 1 (or unset/0), got ${JSON.stringify(flag)}`);
  const count = availableParallelism();
  const hogs = await startCpuHogs(count);
  process.once("exit", hogs.stopSync);
  console.log(`[e2e] stress mode active: ${count} CPU hog(s) at normal priority, one per core (pids ${hogs.pids.join(", ")})`);
  return async () => {
    process.removeListener("exit", hogs.stopSync);
    await hogs.stop();
    console.log(`[e2e] stress mode: ${count} CPU hog(s) stopped`);
  };
}
