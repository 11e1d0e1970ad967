// Preloaded into a process (node --import) by module-graph.test.ts: appends the path of every native addon
// the process loads to the file named by PDSERVE_DLOPEN_LOG, as it loads it.
import { appendFileSync } from 'node:fs';

const log = process.env.PDSERVE_DLOPEN_LOG;
const dlopen = process.dlopen.bind(process);
process.dlopen = (...args) => {
  if (log) appendFileSync(log, `${args[1]}\n`);
  return dlopen(...args);
};
