// The gateway service: `node --import tsx services/gateway/src/main.ts --help` lists its flags and environment.
import { runCli } from '@pdserve/cli';

process.exitCode = await runCli(['gateway', ...process.argv.slice(2)]);
