// The engine under load alone (bench/engine-load.ts), without the rest of `npm run bench`.
//   npm run bench:load
import { setUpE2E } from "../test/helpers/e2e.js";
import { printEngineLoad } from "./engine-load.js";

await setUpE2E();
await printEngineLoad();
