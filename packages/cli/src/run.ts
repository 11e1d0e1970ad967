import { ModelLoadError } from '@pdserve/model';
import cliPackage from '../package.json' with { type: 'json' };
import { commandHelp, nearest, parseFlags, UsageError, type CommandSpec } from './args';
import { generate } from './commands/generate';
import { modelTiny } from './commands/model';
import { serve, start } from './commands/serve';
import { decodeWorker, gateway, mixedWorker, prefillWorker } from './commands/cluster';
import { kvStore } from './commands/kv-store';
import { benchCommand } from './commands/bench';
import { calibrateCommand } from './commands/calibrate';
import { simulateCommand } from './commands/simulate';

/** Every command, as `pdserve <name>` runs it (the chart's container args are checked against these specs). */
export const COMMANDS: readonly CommandSpec[] = [
  start,
  serve,
  gateway,
  prefillWorker,
  decodeWorker,
  mixedWorker,
  kvStore,
  generate,
  modelTiny,
  benchCommand,
  simulateCommand,
  calibrateCommand,
];

/** The release this CLI belongs to (the chart's appVersion and the image tag follow it). */
export const VERSION: string = cliPackage.version;

function overview(): string {
  const lines = ['pdserve — a disaggregated LLM serving cluster', '', 'Usage: pdserve <command> [flags]', '', 'Commands:'];
  for (const c of COMMANDS) lines.push(`  ${c.name.padEnd(16)}${c.summary}`);
  lines.push('', 'Run any command with --help for its flags; pdserve --version prints the version.');
  lines.push('In a checkout, run it as `npm run pdserve -- <command> [flags]`; in the image, pdserve is the entrypoint.');
  return lines.join('\n');
}

/** Runs one CLI command; resolves with the process exit code (2: a usage error, 1: the command failed). */
export async function runCli(argv: readonly string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    process.stdout.write(overview() + '\n');
    return 0;
  }
  if (argv[0] === '--version' || argv[0] === '-V') {
    process.stdout.write(`pdserve ${VERSION}\n`);
    return 0;
  }
  const cmd = COMMANDS.find((c) => c.name.split(' ').every((w, i) => argv[i] === w));
  if (!cmd) {
    const names = COMMANDS.map((c) => c.name);
    const guess =
      nearest(
        argv.slice(0, 2).join(' '),
        names.filter((n) => n.includes(' ')),
      ) ?? nearest(argv[0]!, names);
    const given = argv[0]!.startsWith('-')
      ? `option "${argv[0]}" before a command`
      : `command "${COMMANDS.some((c) => c.name.startsWith(`${argv[0]} `)) ? argv.slice(0, 2).join(' ') : argv[0]}"`;
    process.stderr.write(`pdserve: unknown ${given}${guess ? ` (did you mean ${guess}?)` : ''} (see: pdserve --help)\n`);
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
    // Expected failures (bad model dir, a peer unreachable) are one line, never a stack trace.
    const msg = err instanceof Error ? err.message.split('\n')[0] : String(err);
    process.stderr.write(`pdserve ${cmd.name}: ${msg}\n`);
    if (process.env['PDSERVE_DEBUG'] && !(err instanceof ModelLoadError) && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    return 1;
  }
}
