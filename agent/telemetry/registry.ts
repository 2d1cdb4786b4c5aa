import type { Pipeline, PipelineCounters, PipelineName } from "./delivery.js";
import type { LatencySample } from "./metrics-peers.js";

// Where the running pipelines are found by the status surfaces (node API GetStatus,
// GET /metrics, `plexd top`). The metrics, logs and audit pipelines register themselves when
// they start and unregister on shutdown; readers only ever see counters.

const pipelines = new Map<PipelineName, Pipeline<unknown>>();

export function registerPipeline<T>(name: PipelineName, pipeline: Pipeline<T>): () => void {
  const p = pipeline as unknown as Pipeline<unknown>;
  pipelines.set(name, p);
  return () => {
    if (pipelines.get(name) === p) pipelines.delete(name);
  };
}

export function pipelineCounters(name: PipelineName): PipelineCounters | undefined {
  return pipelines.get(name)?.counters();
}

/** Counters of every registered pipeline, in the order metrics, logs, audit. */
export function allPipelineCounters(): { name: PipelineName; counters: PipelineCounters }[] {
  return (["metrics", "logs", "audit"] as const).flatMap((name) => {
    const c = pipelines.get(name)?.counters();
    return c === undefined ? [] : [{ name, counters: c }];
  });
}

/** Lifts a 401 pause in every pipeline once the identity is accepted again. */
export function resumeAllPipelines(): void {
  for (const p of pipelines.values()) p.resume();
}

let latency: ReadonlyMap<string, LatencySample> | undefined;

/** The metrics pipeline's latest latency per peer id; ListPeers reads it. */
export function setLatencySource(source: ReadonlyMap<string, LatencySample>): () => void {
  latency = source;
  return () => {
    if (latency === source) latency = undefined;
  };
}

export function peerLatency(peerId: string): LatencySample | undefined {
  return latency?.get(peerId);
}
