// The kv-store service: `node --import tsx services/kv-store/src/main.ts --help` lists its flags and environment.
import { runCli } from '@pdserve/cli';

process.exitCode = await runCli(['kv-store', ...process.argv.slice(2)]);
