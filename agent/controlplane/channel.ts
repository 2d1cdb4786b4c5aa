import { PlexdError } from "../../proto/lib/errors.js";
import type { HealthRegistry } from "../health/registry.js";
import { saveSigningKeys, type Identity } from "../identity/store.js";
import type { DesiredStateStore } from "../state/desired.js";
import { plainWriter, type DataWriter } from "../util/atomic.js";
import type { Clock } from "../util/clock.js";
import type { Logger } from "../util/log.js";
import { version } from "../../proto/lib/version.js";
import { Backoff } from "./backoff.js";
import { dispatchEvent, type DispatchOutcome } from "./dispatch.js";
import { EnvelopeVerifier, rejectReasons } from "./envelope.js";
import { runEventStream, type EventStreamExit, type EventStreamState } from "./event-stream.js";
import type { CpClient } from "./http.js";
import { ReplayJournal } from "./replay-journal.js";
import { TrustedSigningKeys } from "./signing-keys.js";
import { openEventStream } from "./sse.js";

// The signed event channel, assembled: trusted keys, replay guard (on disk before an event is
// dispatched, cache/events.{json,journal}, so it survives restarts and crashes, docs/architecture.md#inside-the-agent),
// the SSE supervisor and the dispatcher into the desired-state store. Health and counters are
// fed from here.

export interface ChannelDeps {
  cp: CpClient;
  ca: string | Buffer | undefined;
  identity: Identity;
  dataDir: string;
  /** Writes cache/events.json and signing_keys.json (the agent's DataDirFence). */
  writer?: DataWriter;
  mode: "node" | "bridge";
  store: DesiredStateStore;
  health: HealthRegistry;
  clock: Clock;
  log: Logger;
  signal: AbortSignal;
  idleTimeoutMs: number;
  requestTimeoutMs: number;
  connectTimeoutMs: number;
  pollIntervalMs: number | (() => number);
  onConnected: () => void;
  poll: (signal: AbortSignal) => Promise<void>;
  onRotateKeys: (reason: string) => void;
  triggerReconcile: (why: string) => void;
  onIdentityLost: (status: number) => void;
  onActionRequest?: (eventId: string, payload: unknown) => void;
}

export interface EventChannel {
  readonly keys: TrustedSigningKeys;
  readonly verifier: EnvelopeVerifier;
  readonly outcomes: Record<DispatchOutcome, number>;
  state(): EventStreamState | undefined;
  /** Counts the signing_key_rotated events applied; read it before a state pull starts. */
  readonly keyRotations: number;
  /**
   * Adopts `signing_keys` from a state document; persists when it changed. `rotationsAtFetch` is
   * `keyRotations` read before the pull started: a document fetched before a rotation event was
   * applied would restore the old key set (and refuse the new key's events until the next pull),
   * so it is not adopted; the next pull carries the new set.
   */
  adoptSigningKeys(json: unknown, rotationsAtFetch: number): Promise<boolean>;
  readonly done: Promise<EventStreamExit>;
  flush(): Promise<void>;
}

export async function startEventChannel(d: ChannelDeps): Promise<EventChannel> {
  const { log, clock } = d;
  const writer = d.writer ?? plainWriter;
  const keys = TrustedSigningKeys.fromJSON(d.identity.signingKeys);
  const journal = await ReplayJournal.open(d.dataDir, clock.now(), log, writer);
  const replay = journal.guard;
  const verifier = new EnvelopeVerifier({ keys, replay, now: () => clock.now() });
  const outcomes: Record<DispatchOutcome, number> = { applied: 0, unchanged: 0, deferred: 0, ignored: 0, unknown_type: 0, invalid_payload: 0 };

  const persistKeys = async (): Promise<void> => {
    const j = keys.toJSON();
    d.identity.signingKeys = { current: j.current, previous: j.previous ?? null, transition_expires: j.transition_expires ?? null };
    await saveSigningKeys(d.dataDir, d.identity.signingKeys, writer);
  };

  let lastState: EventStreamState | undefined;
  const reportRejections = (): void => {
    const counts = rejectReasons.filter((r) => r !== "duplicate" && verifier.rejected[r] > 0).map((r) => `${r}: ${verifier.rejected[r]}`);
    if (counts.length > 0) d.health.set("events_rejected", "warning", `signed events rejected since start (${counts.join(", ")})`);
  };

  const done = runEventStream({
    verifier,
    clock,
    backoff: new Backoff(),
    signal: d.signal,
    logger: log,
    pollIntervalMs: d.pollIntervalMs,
    open: (lastEventId, sink, signal) =>
      openEventStream({
        url: new URL(`v1/nodes/${encodeURIComponent(d.identity.nodeId)}/events`, d.cp.baseUrl.href.endsWith("/") ? d.cp.baseUrl : d.cp.baseUrl.href + "/"),
        headers: { Authorization: `Bearer ${d.identity.identityToken}`, "User-Agent": `plexd/${version}` },
        ...(d.ca === undefined ? {} : { ca: d.ca }),
        lastEventId,
        idleTimeoutMs: d.idleTimeoutMs,
        requestTimeoutMs: d.requestTimeoutMs,
        connectTimeoutMs: d.connectTimeoutMs,
        signal,
        onOpen: () => sink.onOpen(),
        onEvents: (frames) => sink.onEvents(frames).finally(reportRejections),
        onComment: () => sink.onComment(),
      }),
    dispatch: (env, verifiedWith) => {
      const outcome = dispatchEvent(env.event_type, env.event_id, env.payload, {
        store: d.store,
        log,
        mode: d.mode,
        verifiedWith,
        onSigningKeyRotated: (rotation) => {
          if (keys.applyRotation(rotation)) {
            log.info({ current: keys.current.b64, previous: keys.previous?.b64, transition_expires: keys.transitionExpires }, "signing key rotated");
            void persistKeys().catch((err: unknown) => log.error({ err: PlexdError.from(err).message }, "signing keys not persisted"));
          }
        },
        onRotateKeys: d.onRotateKeys,
        triggerReconcile: d.triggerReconcile,
        ...(d.onActionRequest ? { onActionRequest: d.onActionRequest } : {}),
      });
      outcomes[outcome]++;
      log.debug({ event_type: env.event_type, event_id: env.event_id, outcome }, "event handled");
    },
    onConnected: d.onConnected,
    onIdentityLost: (status) => d.onIdentityLost(status),
    poll: d.poll,
    onState: (s) => {
      lastState = s;
      if (s.connected) d.health.clear("control_plane_disconnected");
      else if (s.stopped === "forbidden") d.health.set("control_plane_disconnected", "critical", "event stream refused (403); stopped until restart");
      else if (s.reconnectingSince !== null)
        d.health.set("control_plane_disconnected", "warning", `event stream reconnecting since ${new Date(s.reconnectingSince).toISOString()}${s.lastFailure ? ` (${s.lastFailure})` : ""}${s.polling ? "; polling state" : ""}`);
    },
    commit: async (records) => {
      await journal.commit(records);
      d.health.clear("events_not_durable");
    },
    onCommitFailed: (err) => d.health.set("events_not_durable", "critical", `signed events are not being applied: their replay bookkeeping cannot be written (${PlexdError.from(err).message}); state pulls still converge the node`),
    onOversize: () => d.triggerReconcile("oversize_event"),
  });

  return {
    keys,
    verifier,
    outcomes,
    state: () => lastState,
    get keyRotations() {
      return keys.rotations;
    },
    async adoptSigningKeys(json, rotationsAtFetch) {
      if (rotationsAtFetch !== keys.rotations) {
        log.info({ rotations_since_fetch: keys.rotations - rotationsAtFetch }, "state pull older than a signing key rotation; its signing_keys not adopted");
        return false;
      }
      if (!keys.adopt(json)) return false;
      await persistKeys();
      return true;
    },
    done,
    flush: () => journal.close(),
  };
}
