// A benchmark's receiving side in a child process of its own (so sender and receiver are separate processes,
// as in a cluster), spoken to over stdin/stdout one line at a time.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface LineChild<Info> {
  /** The first line the child printed, parsed: where it listens. */
  readonly info: Info;
  /** The child's CPU time so far (µs, user + system): it answers a `cpu` line with one number. */
  cpu(): Promise<number>;
  /** This process's CPU time so far (µs, user + system). */
  ownCpu(): number;
  readonly process: ReturnType<typeof spawn>;
}

/** Starts `node <script> ...args` with this process's loader flags and waits for its first line. */
export async function startLineChild<Info>(script: string, args: readonly string[]): Promise<LineChild<Info>> {
  const child = spawn(process.execPath, [...process.execArgv, script, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  const pending: ((line: string) => void)[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => pending.shift()?.(l));
  const nextLine = (): Promise<string> => new Promise((resolve) => pending.push(resolve));
  const info = JSON.parse(await nextLine()) as Info;
  return {
    info,
    process: child,
    async cpu() {
      const line = nextLine();
      child.stdin.write('cpu\n');
      return Number(await line);
    },
    ownCpu() {
      const u = process.cpuUsage();
      return u.user + u.system;
    },
  };
}
