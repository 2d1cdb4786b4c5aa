import { ConnectError } from "@connectrpc/connect";
import type { NodeClient } from "../client.js";
import { isUnreachable } from "../client.js";
import { pause } from "../../proto/lib/timers.js";
import type { TopAction } from "./reducer.js";

// The data sources of `plexd top`: WatchStatus and Watch streams plus ListPeers, ListPolicies
// and ListExecutions polled every interval. Each source reconnects on its own after a failure, so the view
// keeps retrying while the agent is away (docs/operations.md#plexd-top).

export const retryMs = 1000;

function reason(err: unknown): string {
  if (isUnreachable(err)) {
    const code = (err as { cause?: { code?: string } }).cause?.code;
    return code ?? "connection refused";
  }
  return ConnectError.from(err).rawMessage;
}


async function streamLoop(run: () => Promise<void>, dispatch: (a: TopAction) => void, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    try {
      await run();
    } catch (err) {
      if (signal.aborted) return;
      dispatch({ type: "disconnected", error: reason(err) });
    }
    await pause(retryMs, signal);
  }
}

export interface Feeds {
  /** Poll now instead of at the next tick (`r`). */
  refresh(): void;
}

export function startFeeds(client: NodeClient, dispatch: (a: TopAction) => void, intervalMs: number, signal: AbortSignal): Feeds {
  // The loops below never reject: each catches its RPC failures, pause() only resolves, and
  // React's dispatch only queues an update (the reducer runs later, during render).
  void streamLoop(
    async () => {
      for await (const m of client.agent.watchStatus({}, { signal, timeoutMs: 0 })) if (m.status !== undefined) dispatch({ type: "status", status: m.status, at: Date.now() });
    },
    dispatch,
    signal,
  );
  void streamLoop(
    async () => {
      for await (const e of client.agent.watch({ kinds: [] }, { signal, timeoutMs: 0 })) dispatch({ type: "event", event: e, now: Date.now() });
    },
    dispatch,
    signal,
  );

  let wake: (() => void) | undefined;
  void (async () => {
    while (!signal.aborted) {
      try {
        const [peers, policies] = await Promise.all([
          client.agent.listPeers({ all: false }, { signal, timeoutMs: Math.max(intervalMs, 5000) }),
          client.agent.listPolicies({ rules: true }, { signal, timeoutMs: Math.max(intervalMs, 5000) }),
        ]);
        dispatch({ type: "peers", peers: peers.peers, at: Date.now() });
        dispatch({ type: "rules", rules: policies.firewallRules });
        // An agent without actions (older, or not started yet) answers unimplemented: no panel data.
        const ex = await client.agent.listExecutions({}, { signal, timeoutMs: Math.max(intervalMs, 5000) }).catch(() => undefined);
        if (ex !== undefined) dispatch({ type: "executions", executions: ex.executions });
        const bridge = await client.agent.getBridgeStatus({}, { signal, timeoutMs: Math.max(intervalMs, 5000) }).catch(() => undefined);
        if (bridge !== undefined) dispatch({ type: "bridge", bridge });
        // The bridge's user-access clients (label, handshake, bytes) for the same panel.
        const users = bridge?.enabled ? await client.agent.listUserAccessPeers({}, { signal, timeoutMs: Math.max(intervalMs, 5000) }).catch(() => undefined) : undefined;
        if (users !== undefined) dispatch({ type: "userAccess", userAccess: users });
      } catch (err) {
        if (signal.aborted) return;
        dispatch({ type: "disconnected", error: reason(err) });
      }
      const ac = new AbortController();
      const onAbort = (): void => ac.abort();
      signal.addEventListener("abort", onAbort, { once: true });
      wake = () => ac.abort();
      await pause(intervalMs, ac.signal);
      signal.removeEventListener("abort", onAbort);
      wake = undefined;
    }
  })();
  return { refresh: () => wake?.() };
}
