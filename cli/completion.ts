import type { Command, Option } from "commander";

// `plexd completion bash|zsh|fish`: completion scripts generated from the command tree itself,
// so a new command or flag is completed without anyone editing a script. Options that take a
// value complete file names (most of them are paths) unless they list their choices.

export const shells = ["bash", "zsh", "fish"] as const;
export type Shell = (typeof shells)[number];

interface Node {
  /** Command words after `plexd`, space-separated ("" for the top level). */
  path: string;
  description: string;
  subcommands: string[];
  flags: { names: string[]; takesValue: boolean; choices: string[]; description: string }[];
}

function flagsOf(options: readonly Option[]): Node["flags"] {
  return options
    .filter((o) => !o.hidden)
    .map((o) => ({
      names: [o.long, o.short].filter((n): n is string => n !== undefined),
      takesValue: o.required || o.optional,
      choices: o.argChoices ?? [],
      description: o.description,
    }));
}

function walk(cmd: Command, path: string[], globals: Node["flags"], out: Node[]): void {
  const visible = cmd.commands.filter((c) => !(c as unknown as { _hidden?: boolean })._hidden);
  out.push({
    path: path.join(" "),
    description: cmd.description(),
    subcommands: visible.map((c) => c.name()),
    flags: [...flagsOf(cmd.options), ...globals, { names: ["--help", "-h"], takesValue: false, choices: [], description: "show help" }],
  });
  for (const c of visible) walk(c, [...path, c.name()], globals, out);
}

function tree(program: Command): Node[] {
  const out: Node[] = [];
  const globals = flagsOf(program.options);
  walk(program, [], [], out);
  // Global flags are accepted after any subcommand too.
  return out.map((n) => (n.path === "" ? n : { ...n, flags: [...n.flags.filter((f) => !f.names.includes("--help")), ...globals, { names: ["--help", "-h"], takesValue: false, choices: [], description: "show help" }] }));
}

const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

function bash(nodes: Node[], name: string): string {
  const valueFlags = [...new Set(nodes.flatMap((n) => n.flags.filter((f) => f.takesValue).flatMap((f) => f.names)))];
  const choiceCases = nodes
    .flatMap((n) => n.flags.filter((f) => f.choices.length > 0))
    .map((f) => `    ${f.names.join("|")}) COMPREPLY=($(compgen -W ${q(f.choices.join(" "))} -- "$cur")); return ;;`);
  const cases = nodes.map((n) => {
    const words = [...n.subcommands, ...n.flags.flatMap((f) => f.names.filter((x) => x.startsWith("--")))].join(" ");
    return `    ${q(n.path)}) words=${q(words)} ;;`;
  });
  const paths = nodes.map((n) => n.path).filter((p) => p !== "");
  return `# ${name} completion for bash: source this file, or put it in /etc/bash_completion.d/${name}
_${name}_complete() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}" path="" words="" i w
  case "$prev" in
${[...new Set(choiceCases)].join("\n")}
    ${valueFlags.join("|")}) COMPREPLY=($(compgen -f -- "$cur")); return ;;
  esac
  local known=" ${paths.map((p) => `${p.replace(/ /g, ":")}`).join(" ")} "
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    case "$w" in -*) continue ;; esac
    case " ${valueFlags.join(" ")} " in *" \${COMP_WORDS[i-1]} "*) continue ;; esac
    local next="\${path:+$path:}$w"
    [[ "$known" == *" $next "* ]] && path="$next"
  done
  case "\${path//:/ }" in
${cases.join("\n")}
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _${name}_complete ${name}
`;
}

function zsh(nodes: Node[], name: string): string {
  // zsh runs bash completion functions through bashcompinit; one generator serves both.
  return `#compdef ${name}
# ${name} completion for zsh: put this file on $fpath as _${name}, or source it
autoload -U +X bashcompinit && bashcompinit
${bash(nodes, name).split("\n").slice(1).join("\n")}`;
}

function fish(nodes: Node[], name: string): string {
  const lines = [`# ${name} completion for fish: save as ~/.config/fish/completions/${name}.fish`, `complete -c ${name} -f`];
  for (const n of nodes) {
    const words = n.path === "" ? [] : n.path.split(" ");
    // A command's own words must all be there, and none of its subcommands yet.
    const cond =
      n.path === ""
        ? "__fish_use_subcommand"
        : [`__fish_seen_subcommand_from ${words[words.length - 1]}`, ...(n.subcommands.length > 0 ? [`not __fish_seen_subcommand_from ${n.subcommands.join(" ")}`] : [])].join("; and ");
    for (const s of n.subcommands) lines.push(`complete -c ${name} -n ${q(cond)} -a ${q(s)}`);
    for (const f of n.flags) {
      const long = f.names.find((x) => x.startsWith("--"))?.slice(2);
      const short = f.names.find((x) => /^-[^-]$/.test(x))?.slice(1);
      if (long === undefined || long === "help") continue;
      const value = f.choices.length > 0 ? ` -x -a ${q(f.choices.join(" "))}` : f.takesValue ? " -r -F" : "";
      lines.push(`complete -c ${name} -n ${q(cond)} -l ${long}${short === undefined ? "" : ` -s ${short}`}${value} -d ${q(f.description)}`);
    }
  }
  return lines.join("\n") + "\n";
}

export function completionScript(program: Command, shell: Shell): string {
  const nodes = tree(program);
  const name = program.name();
  return shell === "bash" ? bash(nodes, name) : shell === "zsh" ? zsh(nodes, name) : fish(nodes, name);
}
