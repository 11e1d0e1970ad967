// Real Redis and NATS servers for tests: each on a free loopback port, with its data in a fresh temp
// dir, stopped (and its dir removed) by stop(), and never outliving the test process.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Where the binaries live when the environment does not say otherwise (Debian/Ubuntu packages). */
export const DEFAULT_REDIS_BINARY = process.env['PDSERVE_REDIS_SERVER'] ?? 'redis-server';
export const DEFAULT_NATS_BINARY = process.env['PDSERVE_NATS_SERVER'] ?? 'nats-server';

/** How long a server may take to accept connections after spawn, in milliseconds. */
export const DEFAULT_START_TIMEOUT_MS = 10_000;
/** How long stop() waits after SIGTERM before it sends SIGKILL, in milliseconds. */
export const DEFAULT_STOP_TIMEOUT_MS = 5_000;
/** Interval between readiness probes while a server starts, in milliseconds. */
const PROBE_INTERVAL_MS = 25;
/** Timeout of one readiness probe (connect + greeting), in milliseconds. */
const PROBE_TIMEOUT_MS = 500;
const LOOPBACK = '127.0.0.1';
const INSTALL_HINT = 'install it with `apt-get install redis-server nats-server`';

export interface TestServer {
  /** Client URL, e.g. `redis://127.0.0.1:40123` or `nats://127.0.0.1:40124`. */
  readonly url: string;
  readonly port: number;
  /** Stops the server (SIGTERM, then SIGKILL after the stop timeout) and removes its temp dir. Idempotent. */
  stop(): Promise<void>;
  /** Stops the server and starts a fresh one (empty data) on the same port. */
  restart(): Promise<void>;
}

export interface ServerOptions {
  /** Binary path or name on PATH. */
  readonly binary?: string;
  /** Port to bind; a free loopback port when omitted. */
  readonly port?: number;
  readonly startTimeoutMs?: number;
  readonly stopTimeoutMs?: number;
  /** Require this password (Redis: requirepass; NATS: user `pdserve`); the URL then carries it. */
  readonly password?: string;
  /**
   * Serve TLS with this folder's tls.crt and tls.key (a --tls-dir): the URL is then rediss:// (a TLS port
   * beside the plaintext one the readiness probe uses) or tls:// (NATS upgrades its one port).
   */
  readonly tlsDir?: string;
}

/**
 * Ports the kernel never gives a connection as its source port: from 10000 up to its ephemeral range's
 * start, or none where that range starts lower (or cannot be read).
 */
export function portsBelowEphemeral(): readonly [number, number] | undefined {
  try {
    const lo = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(lo) && lo > 11_000 ? [10_000, lo] : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A free TCP port on 127.0.0.1 (free when asked; another process may still take it before use). Picked at
 * random below the ephemeral range where there is one: a port the kernel picked for listen(0) is one it
 * may also give an outgoing connection meanwhile (a busy test run saw a service fail to bind that way).
 */
export async function freePort(): Promise<number> {
  const range = portsBelowEphemeral();
  for (let i = 0; range !== undefined && i < 64; i++) {
    const port = range[0] + Math.floor(Math.random() * (range[1] - range[0]));
    if ((await listenOnce(port)) !== undefined) return port;
  }
  const port = await listenOnce(0);
  if (port === undefined) throw new Error('could not find a free port');
  return port;
}

/** Listens on `port` (0: any) on loopback and closes again: the port it got, or undefined if it could not. */
function listenOnce(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(undefined));
    server.listen(port, LOOPBACK, () => {
      const address = server.address();
      const got = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(got > 0 ? got : undefined));
    });
  });
}

/** Starts `redis-server` without persistence, bound to 127.0.0.1 only. */
export async function startRedis(options: ServerOptions = {}): Promise<TestServer> {
  const tls = options.tlsDir;
  const tlsPort = tls === undefined ? undefined : await freePort();
  return startServer({
    name: 'redis-server',
    binary: options.binary ?? DEFAULT_REDIS_BINARY,
    scheme: tls === undefined ? 'redis' : 'rediss',
    urlPort: tlsPort,
    userinfo: options.password === undefined ? '' : `:${encodeURIComponent(options.password)}@`,
    args: (port, dir) => [
      '--save',
      '',
      '--appendonly',
      'no',
      '--bind',
      LOOPBACK,
      '--port',
      String(port),
      '--dir',
      dir,
      ...(options.password === undefined ? [] : ['--requirepass', options.password]),
      ...(tls === undefined
        ? []
        : [
            '--tls-port',
            String(tlsPort),
            '--tls-cert-file',
            join(tls, 'tls.crt'),
            '--tls-key-file',
            join(tls, 'tls.key'),
            '--tls-ca-cert-file',
            join(tls, 'ca.crt'),
            '--tls-auth-clients',
            'no',
          ]),
    ],
    probe: (socket, data) => {
      if (data === undefined) socket.write('PING\r\n');
      // With a password, PING before AUTH is refused: that refusal is Redis answering too.
      return (data?.startsWith('+PONG') || data?.startsWith('-NOAUTH')) ?? false;
    },
    options,
  });
}

/** Starts `nats-server` (core NATS, no JetStream), bound to 127.0.0.1 only. */
export function startNats(options: ServerOptions = {}): Promise<TestServer> {
  return startServer({
    name: 'nats-server',
    binary: options.binary ?? DEFAULT_NATS_BINARY,
    scheme: options.tlsDir === undefined ? 'nats' : 'tls',
    userinfo: options.password === undefined ? '' : `pdserve:${encodeURIComponent(options.password)}@`,
    args: (port) => [
      '-a',
      LOOPBACK,
      '-p',
      String(port),
      ...(options.password === undefined ? [] : ['--user', 'pdserve', '--pass', options.password]),
      ...(options.tlsDir === undefined
        ? []
        : ['--tls', '--tlscert', join(options.tlsDir, 'tls.crt'), '--tlskey', join(options.tlsDir, 'tls.key')]),
    ],
    // The server greets every client with an INFO line.
    probe: (_socket, data) => data?.startsWith('INFO') ?? false,
    options,
  });
}

interface ServerSpec {
  readonly name: string;
  readonly binary: string;
  readonly scheme: string;
  /** `user:password@` for the URL, or ''. */
  readonly userinfo?: string;
  /** The port the URL names, when not the probed one (Redis's TLS port). */
  readonly urlPort?: number;
  readonly args: (port: number, dir: string) => string[];
  /** Called on connect (data undefined) and on each chunk; true once the server answered like itself. */
  readonly probe: (socket: Socket, data: string | undefined) => boolean;
  readonly options: ServerOptions;
}

interface Running {
  readonly child: ChildProcess;
  readonly watchdog: ChildProcess;
  readonly dir: string;
  readonly exited: Promise<void>;
}

async function startServer(spec: ServerSpec): Promise<TestServer> {
  const binary = resolveBinary(spec.binary, spec.name);
  const port = spec.options.port ?? (await freePort());
  const startTimeoutMs = spec.options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const stopTimeoutMs = spec.options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
  let running: Running | undefined = await launch(spec, binary, port, startTimeoutMs, stopTimeoutMs);

  const stop = async (): Promise<void> => {
    const current = running;
    running = undefined;
    if (current !== undefined) await terminate(current, stopTimeoutMs);
  };
  return {
    url: `${spec.scheme}://${spec.userinfo ?? ''}${LOOPBACK}:${spec.urlPort ?? port}`,
    port,
    stop,
    restart: async () => {
      await stop();
      running = await launch(spec, binary, port, startTimeoutMs, stopTimeoutMs);
    },
  };
}

async function launch(spec: ServerSpec, binary: string, port: number, startTimeoutMs: number, stopTimeoutMs: number): Promise<Running> {
  const dir = mkdtempSync(join(tmpdir(), `pdserve-${spec.name}-`));
  const logPath = join(dir, 'server.log');
  const logFd = openSync(logPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(binary, spec.args(port, dir), { cwd: dir, stdio: ['ignore', logFd, logFd] });
  } finally {
    closeSync(logFd);
  }
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
    child.once('error', () => resolve()); // spawn failure; reported as an early exit below
  });
  child.unref();
  const running: Running = { child, watchdog: spawnWatchdog(child, dir), dir, exited };
  live.add(running);
  try {
    await waitUntilReady(spec, port, running, startTimeoutMs);
  } catch (error) {
    const log = readTail(logPath);
    await terminate(running, stopTimeoutMs);
    const detail = error instanceof Error ? error.message : String(error);
    throw new Error(`${spec.name} did not start on ${LOOPBACK}:${port}: ${detail}${log ? `\n--- server log ---\n${log}` : ''}`);
  }
  return running;
}

async function waitUntilReady(spec: ServerSpec, port: number, running: Running, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void running.exited.then(() => (exited = true));
  for (;;) {
    if (exited) throw new Error(`process exited early (code ${String(running.child.exitCode)})`);
    if (await probeOnce(spec, port)) return;
    if (Date.now() >= deadline) throw new Error(`not accepting connections after ${timeoutMs} ms`);
    await sleep(PROBE_INTERVAL_MS);
  }
}

function probeOnce(spec: ServerSpec, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: LOOPBACK, port });
    let text = '';
    const finish = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), PROBE_TIMEOUT_MS);
    socket.setEncoding('utf8');
    socket.once('error', () => finish(false));
    socket.once('connect', () => {
      if (spec.probe(socket, undefined)) finish(true);
    });
    socket.on('data', (chunk: string) => {
      text += chunk;
      if (spec.probe(socket, text)) finish(true);
    });
  });
}

async function terminate(running: Running, stopTimeoutMs: number): Promise<void> {
  const { child, watchdog, dir, exited } = running;
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), stopTimeoutMs);
    await exited;
    clearTimeout(timer);
  }
  watchdog.kill('SIGKILL');
  live.delete(running);
  rmSync(dir, { recursive: true, force: true });
}

/**
 * A shell that SIGKILLs the server and removes its dir when our end of its stdin closes, i.e. when this
 * process dies by any means (even SIGKILL, where no exit handler runs).
 */
function spawnWatchdog(child: ChildProcess, dir: string): ChildProcess {
  const script = 'read _ignored; kill -KILL "$1" 2>/dev/null; sleep 0.2; rm -rf "$2"';
  const watchdog = spawn('sh', ['-c', script, 'watchdog', String(child.pid), dir], {
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  watchdog.once('error', () => undefined);
  watchdog.unref();
  const stdin = watchdog.stdin as (NodeJS.WritableStream & { unref?: () => void }) | null;
  stdin?.unref?.();
  return watchdog;
}

function resolveBinary(binary: string, name: string): string {
  const candidates = binary.includes('/')
    ? [binary]
    : [...(process.env['PATH'] ?? '').split(':').filter(Boolean), '/usr/sbin', '/usr/local/sbin', '/sbin'].map((dir) => join(dir, binary));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // try the next one
    }
  }
  throw new Error(`${name} not found (looked for ${binary}); ${INSTALL_HINT}`);
}

function readTail(path: string, maxChars = 2_000): string {
  try {
    const text = readFileSync(path, 'utf8');
    return text.slice(-maxChars).trim();
  } catch {
    return '';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Servers still running when the process exits are killed synchronously, and their temp dirs removed.
const live = new Set<Running>();
process.once('exit', () => {
  for (const { child, watchdog, dir } of live) {
    child.kill('SIGKILL');
    watchdog.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
