import { chown, mkdir, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { PlexdError, isCancellation } from "../../proto/lib/errors.js";
import type { DeregisterOptions, DeregisterResult } from "../deregister.js";
import type { AgentRuntime } from "../runtime.js";
import type { DesiredStateStore } from "../state/desired.js";
import type { AgentContext } from "../system.js";
import { lookupGroupId } from "./access.js";
import { AgentBackend } from "./agent-backend.js";
import { startNodeApi, type NodeApiServer } from "./server.js";
import { NodeState, type CpRequestFn } from "./state/node-state.js";
import { storeDownstream } from "./state/store-downstream.js";
import { readReaderTokenFile, readSecretsTokenFile } from "./token-files.js";

// The node API of a running agent (docs/node-api.md): opened in start-up phase 3, before
// the identity exists, so `plexd status` answers from then on; `attach` hands it the runtime
// once there is one. NodeState reads metadata, data and the secret index from the
// desired-state store and talks to the control plane through the agent's own client with
// the current identity token; the NSK is read from data_dir/node_secret_key at each secret
// read, so a rotation (which replaces that file) takes effect at once.

export interface AgentNodeApi {
  readonly server: NodeApiServer;
  readonly backend: AgentBackend;
  readonly state: NodeState;
  attach(runtime: AgentRuntime): void;
  /** Stop sequence (docs/architecture.md#lifecycle): a bounded last report sync, then the socket goes. */
  close(opts?: { syncReports?: boolean }): Promise<void>;
}

/** What the node API asks of the agent's main loop. */
export interface AgentControl {
  /** Stops the loops, deregisters, tears down; the agent exits after answering. */
  deregister(opts: DeregisterOptions): Promise<DeregisterResult>;
}

/**
 * The socket must belong to group plexd: that group is the reader gate (docs/node-api.md). The agent
 * normally runs with primary group plexd, so this is a no-op; run as root (or with another
 * primary group) the socket would otherwise carry the wrong group.
 */
async function ensureSocketGroup(path: string, ctx: AgentContext): Promise<void> {
  const gid = lookupGroupId("plexd");
  if (gid === undefined) return;
  const st = await stat(path);
  if (st.gid === gid) return;
  await chown(path, st.uid, gid).catch((err: unknown) =>
    ctx.log.warn({ socket: path, err: PlexdError.from(err).message }, "node API socket is not in group plexd; only its owner can use it"),
  );
}

/**
 * The TCP secrets class, or undefined when it stays off. A secrets token file that others
 * could read disables that class only — the way sshd's StrictModes refuses a key file with
 * lax modes and goes on serving: the mesh, the unix socket and the reader token keep
 * working, so fixing a file mode never costs the node its tunnels or heartbeats, while the
 * refusal is loud (an error log line and a health condition in `plexd status` and the heartbeat).
 */
async function secretsToken(ctx: AgentContext, file: string): Promise<string | undefined> {
  if (file === "") return undefined;
  const r = await readSecretsTokenFile(file, "node_api.http.secrets_token_file");
  if (r.ok) {
    ctx.health.clear(SECRETS_TOKEN_REFUSED);
    return r.token;
  }
  ctx.log.error({ health: SECRETS_TOKEN_REFUSED, file }, `TCP secrets access disabled: ${r.issue}`);
  ctx.health.set(SECRETS_TOKEN_REFUSED, "warning", `TCP secrets access disabled: ${r.issue}`);
  return undefined;
}

const SECRETS_TOKEN_REFUSED = "node_api_secrets_token_refused";

interface RuntimeRef {
  current: AgentRuntime | undefined;
}

function identityOf(ref: RuntimeRef): AgentRuntime["identity"] {
  if (ref.current === undefined) throw new PlexdError("unavailable", "this node is not registered yet");
  return ref.current.identity;
}

/**
 * Everything here lives until close(), not until the agent's stop signal: the socket is the
 * last thing to go in the stop sequence, after the runtime has wound down.
 */
export async function startAgentNodeApi(ctx: AgentContext, store: DesiredStateStore, control: AgentControl): Promise<AgentNodeApi> {
  const life = new AbortController();
  try {
    return await open(ctx, store, control, life);
  } catch (err) {
    life.abort(); // nothing half-started keeps listening
    throw err;
  }
}

async function open(ctx: AgentContext, store: DesiredStateStore, control: AgentControl, life: AbortController): Promise<AgentNodeApi> {
  const { config } = ctx;
  const { signal } = life;
  const log = ctx.log.child({ component: "nodeapi" });
  const ref: RuntimeRef = { current: undefined };
  // The agent's own control-plane client, with whatever identity token is current (it
  // changes on re-registration).
  const cpRequest: CpRequestFn = async (method, path, body, sig) => {
    const res = await ctx.cp.request({ method, path, token: identityOf(ref).identityToken, ...(body === undefined ? {} : { body }), ...(sig === undefined ? {} : { signal: sig }) });
    return { status: res.status, body: res.body };
  };
  const state = await NodeState.open({
    dataDir: config.data_dir,
    writer: ctx.fence,
    nodeId: () => identityOf(ref).nodeId,
    cpRequest,
    log,
    clock: ctx.clock,
    reportDebounceMs: config.node_api.report_debounce.ms,
    downstream: storeDownstream(store, log, signal),
  });
  const backend = new AgentBackend({ ctx, store, signal, control });
  const { http: tcp } = config.node_api;
  const httpOpts = tcp.enabled ? { listen: tcp.listen, token: await readReaderTokenFile(tcp.token_file), secretsToken: await secretsToken(ctx, tcp.secrets_token_file) } : undefined;

  // /run/plexd comes from the unit's RuntimeDirectory=; outside systemd create it like systemd would.
  await mkdir(dirname(config.node_api.socket), { recursive: true, mode: 0o755 });
  const server = await startNodeApi({ socketPath: config.node_api.socket, backend, state, log, signal, http: httpOpts });
  await ensureSocketGroup(config.node_api.socket, ctx);

  const settle = (p: Promise<unknown>): Promise<unknown> =>
    p.catch((err: unknown) => {
      if (!isCancellation(err)) log.error({ err: PlexdError.from(err).message }, "node API loop failed");
    });
  const loops: Promise<unknown>[] = [settle(backend.run(signal))];
  const sync = new AbortController();

  let closing: Promise<void> | undefined;
  return {
    server,
    backend,
    state,
    attach(rt) {
      ref.current = rt;
      backend.attach(rt);
      loops.push(settle(state.runReportSync(sync.signal)));
    },
    close: (opts = {}) =>
      (closing ??= (async () => {
        sync.abort();
        await Promise.all(loops.slice(1));
        if (opts.syncReports !== false && ref.current !== undefined && state.syncStatus().pending.length > 0) {
          const sent = await state.syncOnce(AbortSignal.timeout(config.node_api.shutdown_timeout.ms)).catch(() => false);
          if (!sent) log.warn({ pending: state.syncStatus().pending }, "report entries not synced before shutdown; sent after the next start");
        }
        await server.close();
        life.abort();
        await Promise.all(loops);
      })()),
  };
}
