import { randomInt } from "node:crypto";

// Every resource a harness creates carries this prefix, so that several runs on one machine
// (parallel helpers, CI, a developer) never collide and leftovers are recognisable.
// Short on purpose: Linux interface names are limited to 15 characters (IFNAMSIZ - 1).
export const PREFIX_PATTERN = /^px[0-9a-z]{4}$/;

function makeRunPrefix(): string {
  return "px" + randomInt(0, 36 ** 4).toString(36).padStart(4, "0");
}

/** The prefix of this process's run, e.g. `px3k9a`. */
export const RUN_PREFIX: string = makeRunPrefix();

let counter = 0;

/** A short id unique within this run (base36 counter), for naming topologies and namespaces. */
export function nextId(): string {
  counter += 1;
  return counter.toString(36);
}
