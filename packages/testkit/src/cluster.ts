// Starts pdserve services as separate processes for end-to-end tests, and stops them.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT, withHugePages } from '@pdserve/model';
import { freePort } from './servers';

export interface ServiceProcess {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly port: number;
  readonly adminPort: number;
  /** Everything it printed (stdout and stderr), for failure messages. */
  output(): string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

const CLI = join(REPO_ROOT, 'packages', 'cli', 'src', 'main.ts');
const live = new Set<ChildProcess>();
process.once('exit', () => live.forEach((p) => p.kill('SIGKILL')));

/** Spawns `pdserve <command> ...args` with a free gRPC/HTTP port and admin port on loopback. */
export async function spawnService(
  name: string,
  command: string,
  args: readonly string[],
  portFlag: '--port' | '--grpc-port',
): Promise<ServiceProcess> {
  const port = await freePort();
  const adminPort = await freePort();
  const proc = spawn(
    process.execPath,
    ['--import', 'tsx', CLI, command, portFlag, String(port), '--admin-port', String(adminPort), '--host', '127.0.0.1', ...args],
    {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: withHugePages({ ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' }),
    },
  );
  live.add(proc);
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  proc.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  const exited = new Promise<void>((r) => proc.once('exit', () => (live.delete(proc), r())));
  return {
    name,
    proc,
    port,
    adminPort,
    output: () => out,
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Polls until `check` passes or the time is up (then throws with `what`). */
export async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 30_000, everyMs = 100): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
