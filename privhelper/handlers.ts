// Assembles the RPC handlers from their dependencies; main.ts and tests share it.
import type { PrivHelperService } from "../proto/gen/plexd/priv/v1/priv_pb.js";
import type { Handlers } from "./adapter.js";
import type { PrivConfig } from "./config.js";
import type { Logger } from "./log.js";
import type { Host } from "./os/host.js";
import type { Runner } from "./os/runner.js";
import { makeGetInfo } from "./service/get-info.js";

export interface Deps {
  runner: Runner;
  host: Host;
  config: PrivConfig;
  log: Logger;
  startedAtMs: number;
}

type Methods = (typeof PrivHelperService)["method"] extends infer M ? { [K in keyof M]: M[K] } : never;

export function buildHandlers(deps: Deps): Handlers<Methods> {
  return {
    getInfo: makeGetInfo(deps),
  };
}
