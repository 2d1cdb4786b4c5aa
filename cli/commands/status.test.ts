import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { GetStatusResponseSchema, PipelineStatusSchema } from "../../proto/gen/plexd/node/v1/node_pb.js";
import { pipelineLine, statusText } from "./status.js";

describe("plexd status: telemetry", () => {
  const now = Date.parse("2026-01-01T00:00:10Z");
  it("prints one line per pipeline with buffered, sent, dropped and the last flush", () => {
    const p = create(PipelineStatusSchema, { name: "metrics", buffered: 12n, sentTotal: 340n, droppedOverflowTotal: 5n, droppedOversizeTotal: 1n, lastFlushAt: timestampFromMs(now - 3000), lastFlushOutcome: "http 503" });
    expect(pipelineLine(p, now)).toBe("12 buffered, 340 sent, 6 dropped (5 overflow), last flush http 503 3s ago");
    const paused = create(PipelineStatusSchema, { name: "logs", paused: "unauthorized" });
    expect(pipelineLine(paused, now)).toBe("0 buffered, 0 sent, 0 dropped (0 overflow), never flushed, PAUSED (unauthorized)");
    const text = statusText(create(GetStatusResponseSchema, { nodeId: "n_a", pipelines: [p] }), now);
    expect(text).toMatch(/^Telemetry metrics\s+12 buffered, 340 sent/m);
  });
});
