// `matchlock allow-list add|delete ID HOST...`: changes a running sandbox's network allow-list
// (spec 5.5), through the engine that runs it, as `matchlock exec` reaches it: the resident
// engine's sandboxes and a foreground `matchlock run`'s.
import type { Command } from "commander";
import { Method } from "../protocol/methods.js";
import { checkAllowListHosts } from "../sdk/validate.js";
import { stringList } from "../sdk/wire.js";
import { engineOf, openResident } from "./resident-link.js";

export function registerAllowListCommand(program: Command): void {
  const allowList = program
    .command("allow-list")
    .description("change a running sandbox's network allow-list (it must have a sealed network: --allow-host, --secret or --network-intercept)");
  for (const change of ["add", "delete"] as const) {
    allowList
      .command(change)
      .description(change === "add"
        ? "allow these hosts from now on (new connections, requests and DNS answers)"
        : "stop allowing these hosts (open connections keep going; an empty allow-list denies every host)")
      .argument("<id>", "sandbox id (vm-xxxxxxxx)")
      .argument("<hosts...>", "host patterns, as --allow-host takes them (several per argument: comma-separated)")
      .action(async (id: string, hostArgs: string[]) => {
        const hosts = checkAllowListHosts(hostArgs);
        const transport = await openResident(await engineOf(id, "allow-list"));
        try {
          await transport.request(Method.ATTACH, { id });
          const result = await transport.request(change === "add" ? Method.ALLOW_LIST_ADD : Method.ALLOW_LIST_DELETE, { hosts });
          const changed = stringList(change === "add" ? result.added : result.removed);
          const list = stringList(result.allowed_hosts);
          process.stdout.write(
            (changed.length === 0
              ? `No ${change === "add" ? "new hosts were added to" : "hosts were removed from"} ${id}\n`
              : `${change === "add" ? "Added to" : "Removed from"} ${id}: ${changed.join(",")}\n`) +
            `Current allow-list: ${list.length > 0 ? list.join(",") : "(empty: every host denied)"}\n`,
          );
        } finally {
          await transport.shutdown(2000);
        }
      });
  }
}
