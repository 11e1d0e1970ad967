import { ModelLoadError } from '@pdserve/model';
import { commandHelp, parseFlags, UsageError, type CommandSpec } from './args';
import { generate } from './commands/generate';
import { modelTiny } from './commands/model';
import { serve, start } from './commands/serve';
import { decodeWorker, gateway, mixedWorker, prefillWorker } from './commands/cluster';
import { kvStore } from './commands/kv-store';
import { benchCommand } from './commands/bench';
import { calibrateCommand } from './commands/calibrate';
import { simulateCommand } from './commands/simulate';

/** Every command, as `pdserve <name>` runs it (the chart's container args are checked against these specs). */
export const COMMANDS: readonly CommandSpec[] = [start, serve, gateway, prefillWorker, decodeWorker, mixedWorker, kvStore, generate, modelTiny, benchCommand, simulateCommand, calibrateCommand];

function overview(): string {
  const lines = ['pdserve — a disaggregated LLM serving cluster', '', 'Usage: npm run pdserve -- <command> [flags]', '', 'Commands:'];
  for (const c of COMMANDS) lines.push(`  ${c.name.padEnd(16)}${c.summary}`);
  lines.push('', 'Run any command with --help for its flags.');
  return lines.join('\n');
}

/** Runs one CLI command; resolves with the process exit code. */
export async function runCli(argv: readonly string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    process.stdout.write(overview() + '\n');
    return 0;
  }
  const cmd = COMMANDS.find((c) => {
    const words = c.name.split(' ');
    return words.every((w, i) => argv[i] === w);
  });
  if (!cmd) {
    process.stderr.write(`pdserve: unknown command "${argv.slice(0, 2).join(' ')}" (see: npm run pdserve -- --help)\n`);
    return 2;
  }
  const rest = argv.slice(cmd.name.split(' ').length);
  try {
    const flags = parseFlags(cmd, rest);
    if (flags === 'help') {
      process.stdout.write(commandHelp(cmd) + '\n');
      return 0;
    }
    await cmd.run(flags);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`pdserve ${cmd.name}: ${err.message}\n`);
      return 2;
    }
    // Expected failures (bad model dir, bad flag value) are one line, never a stack trace.
    const msg = err instanceof Error ? err.message.split('\n')[0] : String(err);
    process.stderr.write(`pdserve ${cmd.name}: ${msg}\n`);
    if (process.env['PDSERVE_DEBUG'] && !(err instanceof ModelLoadError) && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    return 1;
  }
}


