// The README's quick start: boot a sandbox, run a command, print its output.
import { Client, Sandbox } from "../src/sdk/index.js";

await using client = new Client();
await client.launch(new Sandbox("local/busybox:latest"));
const result = await client.exec("echo hello from the sandbox");
process.stdout.write(result.stdout);
