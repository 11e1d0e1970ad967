// The decode-worker service: `node --import tsx services/decode-worker/src/main.ts --help` lists its flags and environment.
import { runCli } from '@pdserve/cli';

process.exitCode = await runCli(['decode-worker', ...process.argv.slice(2)]);
