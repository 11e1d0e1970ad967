export { COMMANDS, runCli } from './run';
export { envName, parseFlags, Flags, UsageError, type CommandSpec, type FlagSpec } from './args';
export { engineOptions, policyOf, transportsOf } from './commands/cluster';
