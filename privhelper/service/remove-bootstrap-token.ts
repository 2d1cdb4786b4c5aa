import { unlink } from "node:fs/promises";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { RemoveBootstrapTokenRequest, RemoveBootstrapTokenResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import type { PrivConfig } from "../config.js";
import type { Logger } from "../log.js";

// The bootstrap token lives in root-owned /etc/plexd, where the agent may read but not delete. The only path this call can remove is the
// configured token.file: the request carries no path at all.
export function makeRemoveBootstrapToken(deps: { config: PrivConfig; log: Logger }) {
  return async (_req: RemoveBootstrapTokenRequest): Promise<MessageInitShape<typeof RemoveBootstrapTokenResponseSchema>> => {
    try {
      await unlink(deps.config.tokenFile);
      deps.log.info({ file: deps.config.tokenFile }, "bootstrap token removed");
      return { removed: true };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { removed: false };
      throw PlexdError.from(err);
    }
  };
}
