import { Option, type Command } from "commander";
import { exitCodes } from "../exit-codes.js";
import { install, InstallError, uninstall } from "./run.js";

// The `install` and `uninstall` commands of `plexd` (docs/install.md).

function fail(err: unknown): never {
  if (err instanceof InstallError) {
    process.stderr.write(`plexd: nothing was changed:\n${err.problems.map((p) => `  ${p}`).join("\n")}\n`);
    process.exit(exitCodes.usage);
  }
  // Past the checks: what was done so far is printed above; running again completes it.
  process.stderr.write(`plexd: failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(exitCodes.error);
}

const out = (line: string): void => void process.stdout.write(`${line}\n`);
const rootOption = (): Option => new Option("--root <dir>", "install into this directory tree instead of the running system (accounts go into its etc/passwd and etc/group; systemctl is not run)");

export function addInstallCommands(program: Command): void {
  program
    .command("install")
    .description("install this release on the host (root): accounts, directories, configuration, token, systemd units; idempotent")
    .option("--api-url <url>", "control plane URL for a new /etc/plexd/config.yaml (an existing one is kept)")
    .option("--token-file <path>", "bootstrap token to write to /etc/plexd/bootstrap-token")
    .option("--token-stdin", "read the bootstrap token from standard input")
    .option("--no-start", "enable the units but do not start them")
    .addOption(rootOption())
    .action((opts: { apiUrl?: string; tokenFile?: string; tokenStdin?: boolean; start: boolean; root?: string }) => {
      try {
        install({ root: opts.root ?? "/", start: opts.start, out, ...(opts.apiUrl !== undefined ? { apiUrl: opts.apiUrl } : {}), ...(opts.tokenFile !== undefined ? { tokenFile: opts.tokenFile } : {}), ...(opts.tokenStdin === true ? { tokenStdin: true } : {}) });
      } catch (err) {
        fail(err);
      }
    });

  program
    .command("uninstall")
    .description("stop and remove plexd's units and programs (root); configuration and state stay unless --purge; does not deregister")
    .option("--purge", "also remove /etc/plexd, /var/lib/plexd and the plexd accounts")
    .addOption(rootOption())
    .action((opts: { purge?: boolean; root?: string }) => {
      try {
        uninstall({ root: opts.root ?? "/", purge: opts.purge === true, out });
      } catch (err) {
        fail(err);
      }
    });
}
