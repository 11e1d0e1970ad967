// Imports the module named on the command line and prints, as JSON, the native addons and the CommonJS
// modules that loading it pulled in (module-graph.test.ts).
import { createRequire } from 'node:module';

const native: string[] = [];
const dlopen = process.dlopen.bind(process);
process.dlopen = (...args: Parameters<typeof process.dlopen>): void => {
  native.push(args[1]);
  dlopen(...args);
};
await import(process.argv[2]!);
const commonJs = Object.keys(createRequire(import.meta.url).cache);
process.stdout.write(JSON.stringify({ native, commonJs }));
process.exit(0);
