// The prefill-worker service: `node --import tsx services/prefill-worker/src/main.ts --help` lists its flags and environment.
import { runCli } from '@pdserve/cli';

process.exitCode = await runCli(['prefill-worker', ...process.argv.slice(2)]);
