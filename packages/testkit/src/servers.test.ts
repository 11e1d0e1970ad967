import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { freePort, portsBelowEphemeral, startNats, startRedis, type TestServer } from './servers';

/** Sends `line` (if any) and resolves with the first chunk the server answers. */
function firstReply(port: number, line?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.setEncoding('utf8');
    socket.once('error', reject);
    socket.once('connect', () => {
      if (line !== undefined) socket.write(line);
    });
    socket.once('data', (chunk: string) => {
      socket.destroy();
      resolve(chunk);
    });
  });
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('error', () => resolve(true));
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

describe('freePort', () => {
  it('returns a usable loopback port', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    expect(await refused(port)).toBe(true);
    // Never one the kernel may give an outgoing connection meanwhile, where its ephemeral range leaves room below.
    const below = portsBelowEphemeral();
    if (below !== undefined) expect(port).toBeLessThan(below[1]);
  });
});

describe.each([
  ['redis', startRedis, 'PING\r\n', '+PONG'],
  ['nats', startNats, undefined, 'INFO'],
] as const)('%s test server', (name, start, probe, greeting) => {
  it('starts on loopback, restarts on the same port, and stops', async () => {
    const server: TestServer = await start();
    try {
      expect(server.url).toBe(`${name}://127.0.0.1:${server.port}`);
      expect(await firstReply(server.port, probe)).toContain(greeting);
      await server.restart();
      expect(await firstReply(server.port, probe)).toContain(greeting);
    } finally {
      await server.stop();
    }
    expect(await refused(server.port)).toBe(true);
    await server.stop(); // idempotent
  });

  it('explains how to install a missing binary', async () => {
    await expect(start({ binary: '/nonexistent/bin/server' })).rejects.toThrow(/apt-get install redis-server nats-server/);
  });
});

describe('startRedis', () => {
  it('keeps its data in a temp dir that stop() removes', async () => {
    const server = await startRedis();
    const dir = (await firstReply(server.port, 'CONFIG GET dir\r\n')).split('\r\n')[4] ?? '';
    expect(dir).toMatch(/pdserve-redis-server-/);
    expect(existsSync(dir)).toBe(true);
    await server.stop();
    expect(existsSync(dir)).toBe(false);
  });
});

describe('orphan protection', () => {
  it('kills the server when the owning process is SIGKILLed', async () => {
    const servers = fileURLToPath(new URL('./servers.ts', import.meta.url));
    const script = `import { startRedis } from ${JSON.stringify(servers)};
      const server = await startRedis();
      process.stdout.write(String(server.port) + '\\n');
      setInterval(() => undefined, 1000);`;
    const owner = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const port = await new Promise<number>((resolve, reject) => {
      owner.once('exit', (code) => reject(new Error(`owner exited early (${String(code)})`)));
      owner.stdout.setEncoding('utf8');
      owner.stdout.once('data', (chunk: string) => resolve(Number.parseInt(chunk, 10)));
    });
    expect(await refused(port)).toBe(false);
    owner.kill('SIGKILL');
    const deadline = Date.now() + 5_000;
    while (!(await refused(port)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await refused(port)).toBe(true);
  });
});
