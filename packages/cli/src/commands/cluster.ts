// The cluster's services, each startable alone (as in Kubernetes), and a local cluster: in one process
// with the embedded control plane, or as separate processes sharing Redis and NATS.
import { spawn, type ChildProcess } from 'node:child_process';
import { connectControlPlane, processHub, type ControlPlane } from '@pdserve/control-plane';
import { ENGINE_DEFAULTS, SPECULATIVE_DEFAULTS, type EngineOptions, type SpeculativeOptions } from '@pdserve/engine';
import type { Logger } from '@pdserve/log';
import { MIGRATION_DEFAULTS, parseClassSlos, startGateway, type AdmissionOptions, type Gateway } from '@pdserve/gateway';
import { parseCostModel } from '@pdserve/bench';
import { readFileSync } from 'node:fs';
import { ensureTinyModel, hugePagesMissing, withHugePages } from '@pdserve/model';
import { POLICY_NAMES, type PolicyName } from '@pdserve/router';
import { isTransportKind, TRANSPORT_KINDS, type TransportKind } from '@pdserve/transfer';
import { startKvStoreService } from '@pdserve/kv-store';
import type { WorkerRole } from '@pdserve/contracts';
import { startWorkerService } from '@pdserve/worker';
import { BYTES, Flags, int, listOf, oneOf, PORT, url, UsageError, type CommandSpec, type FlagSpec, type FlagValue } from '../args';
import { serviceLogger } from '../logging';
import { checkEdge, EDGE_FLAGS, edgeForChild, edgeOptionsOf } from './edge';
import { progressBar } from '../progress';
import { localTlsOf, TLS_FLAGS, tlsOf } from '../tls';
import type { TlsMaterial } from '@pdserve/rpc';

/** Per-class SLOs in ms, as --ttft-slo-ms and --itl-slo-ms take them. */
const CLASS_SLOS: FlagValue = {
  kind: 'custom',
  placeholder: 'CLASS=MS,...',
  check: (v) => {
    if (v.trim() === '') return 'expected CLASS=MS pairs, e.g. priority=500,default=2000';
    try {
      parseClassSlos(v);
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  },
};

/** Cluster names scope Redis keys and NATS subjects (pdserve.<cluster>.kv.<worker>): no dots, spaces or wildcards. */
const CLUSTER_NAME: FlagValue = {
  kind: 'custom',
  placeholder: 'NAME',
  check: (v) => (/^[a-zA-Z0-9_-]+$/.test(v) ? undefined : 'must be letters, digits, - and _'),
};

export const COMMON_FLAGS: Readonly<Record<string, FlagSpec>> = {
  model: { type: 'string', help: 'Hugging Face-layout model directory (default: the built-in tiny model)' },
  'served-model-name': { type: 'string', help: 'model id clients send; the same on every service (it seeds block hashes)' },
  cluster: { type: 'string', help: 'cluster name: Redis keys and NATS subjects are scoped by it', default: 'pdserve', value: CLUSTER_NAME },
  redis: {
    type: 'string',
    help: 'Redis URL for the registry (e.g. redis://127.0.0.1:6379); default: in process',
    value: url('redis:', 'rediss:'),
  },
  nats: {
    type: 'string',
    help: 'NATS URL for KV and load events (e.g. nats://127.0.0.1:4222); default: in process',
    value: url('nats:', 'tls:'),
  },
  host: { type: 'string', help: 'address to listen on', default: '127.0.0.1' },
  'advertise-host': { type: 'string', help: 'address others dial (default: --host)' },
  'admin-port': { type: 'string', help: 'port for /metrics, /health, /ready (0 = any free port)', default: '0', value: PORT },
  'log-level': { type: 'string', help: 'least severe level logged', default: 'info', value: oneOf('debug', 'info', 'warn', 'error') },
  'log-format': {
    type: 'string',
    help: 'json lines, pretty lines, or auto (pretty when stderr is a terminal)',
    default: 'auto',
    value: oneOf('json', 'pretty', 'auto'),
  },
  'lease-ttl-ms': {
    type: 'string',
    help: 'registry lease: a worker that stops heartbeating leaves within this (ms)',
    default: '10000',
    value: int(100),
  },
  ...TLS_FLAGS,
};

export const ENGINE_FLAGS: Readonly<Record<string, FlagSpec>> = {
  'kv-cache-bytes': { type: 'string', help: 'KV pool size (e.g. 256M, 1G)', default: String(ENGINE_DEFAULTS.kvCacheBytes), value: BYTES },
  'block-size': {
    type: 'string',
    help: 'tokens per KV block (the same on every service)',
    default: String(ENGINE_DEFAULTS.blockSize),
    value: int(1),
  },
  'max-num-seqs': {
    type: 'string',
    help: 'most sequences in the running batch',
    default: String(ENGINE_DEFAULTS.maxNumSeqs),
    value: int(1),
  },
  'max-num-batched-tokens': {
    type: 'string',
    help: 'most tokens computed per step',
    default: String(ENGINE_DEFAULTS.maxNumBatchedTokens),
    value: int(1),
  },
  'prefill-chunk-tokens': {
    type: 'string',
    help: 'longest prefill chunk per sequence per step; 0 = no chunking',
    default: String(ENGINE_DEFAULTS.prefillChunkTokens),
    value: int(0),
  },
  'max-waiting': { type: 'string', help: 'queued requests before 429', default: String(ENGINE_DEFAULTS.maxWaiting), value: int(0) },
  'max-model-len': { type: 'string', help: "longest prompt + output; default the model's context", value: int(2) },
  'execution-provider': { type: 'string', help: 'onnxruntime execution provider (cpu, cuda, cann, ...)', default: 'cpu' },
  threads: { type: 'string', help: 'onnxruntime intra-op threads; 0 = every core this process may use', default: '0', value: int(0) },
  'ort-spin': {
    type: 'string',
    help: 'onnxruntime threads spin-wait between runs (auto: off where serve/start run several engines on one host, else on)',
    default: 'auto',
    value: oneOf('on', 'off', 'auto'),
  },
  speculative: {
    type: 'string',
    help: "speculative decoding: off, draft (a small model proposes, --speculative-model) or ngram (lookup in the request's own tokens); decoding engines only",
    default: 'off',
    value: oneOf('off', 'draft', 'ngram'),
  },
  'speculative-model': { type: 'string', help: 'draft model directory (Hugging Face layout, same tokenizer and vocabulary as the model)' },
  'num-speculative-tokens': {
    type: 'string',
    help: 'tokens proposed per step (K); the model verifies K+1 positions in one forward',
    default: String(SPECULATIVE_DEFAULTS.numTokens),
    value: int(1, 16),
  },
  'ngram-min': {
    type: 'string',
    help: 'shortest suffix n-gram lookup matches',
    default: String(SPECULATIVE_DEFAULTS.ngramMin),
    value: int(1),
  },
  'ngram-max': {
    type: 'string',
    help: 'longest suffix n-gram lookup matches',
    default: String(SPECULATIVE_DEFAULTS.ngramMax),
    value: int(1),
  },
};

/** Speculative decoding from --speculative and its flags (undefined: off). */
export function speculativeOf(f: Flags): SpeculativeOptions | undefined {
  const method = f.str('speculative') ?? 'off';
  const numTokens = f.int('num-speculative-tokens', 1) ?? SPECULATIVE_DEFAULTS.numTokens;
  if (method === 'off') return undefined;
  if (method === 'draft') {
    const modelDir = f.str('speculative-model');
    if (!modelDir) throw new UsageError('--speculative draft needs --speculative-model DIR');
    return { method, modelDir, numTokens };
  }
  if (method !== 'ngram') throw new UsageError(`--speculative takes off, draft or ngram, got "${method}"`);
  const ngramMin = f.int('ngram-min', 1) ?? SPECULATIVE_DEFAULTS.ngramMin;
  const ngramMax = f.int('ngram-max', 1) ?? SPECULATIVE_DEFAULTS.ngramMax;
  if (ngramMax < ngramMin) throw new UsageError(`--ngram-max (${ngramMax}) must be at least --ngram-min (${ngramMin})`);
  return { method, numTokens, ngramMin, ngramMax };
}

export const ROUTER_FLAGS: Readonly<Record<string, FlagSpec>> = {
  port: { type: 'string', help: 'OpenAI API port (0 = any free port)', default: '8000', value: PORT },
  policy: { type: 'string', help: 'routing policy', default: 'kv-aware', value: oneOf(...POLICY_NAMES) },
  'remote-prefill-min-tokens': {
    type: 'string',
    help: 'prefill stays on the decode worker when fewer prompt tokens than this are uncached there',
    default: '256',
    value: int(0),
  },
  'kv-streaming': {
    type: 'string',
    help: "disaggregated requests: on, each prefill chunk's KV goes to the decode worker while the next chunk computes; off, the whole prompt's KV after the first token",
    default: 'on',
    value: oneOf('on', 'off'),
  },
  'decode-computes-tail': {
    type: 'string',
    help: "with --kv-streaming on: on, the decode worker computes the block holding the prompt's last token and samples the first token (every block before it streamed in), so the second token follows one decode step later; off, the prefill worker samples it and that block moves after",
    default: 'on',
    value: oneOf('on', 'off'),
  },
  'prefill-queue-max-tokens': {
    type: 'string',
    help: 'a prefill worker with more queued prefill tokens than this is busy (prefill then stays local)',
    default: '8192',
    value: int(0),
  },
  'ttft-slo-ms': {
    type: 'string',
    help: 'time-to-first-token SLO per service class (CLASS=MS,...; classes priority, default, flex): a request predicted to miss it gets 429 with Retry-After; 0 or absent = none',
    value: CLASS_SLOS,
  },
  'itl-slo-ms': {
    type: 'string',
    help: 'inter-token latency SLO per service class (CLASS=MS,...), predicted from the decode batch; 0 or absent = none',
    value: CLASS_SLOS,
  },
  'cost-model': {
    type: 'string',
    help: "cost model JSON written by `pdserve calibrate`, for the SLO predictions (default: the simulator's placeholders, corrected by observed TTFT)",
  },
  'migration-limit': {
    type: 'string',
    help: 'times a stream that breaks after tokens went out is resumed on another decode worker; past it, an error event then [DONE]',
    default: String(MIGRATION_DEFAULTS.limit),
    value: int(0),
  },
};

const WORKER_FLAGS: Readonly<Record<string, FlagSpec>> = {
  'instance-id': { type: 'string', help: 'stable id in the registry (default: role + random suffix)' },
  'grpc-port': { type: 'string', help: 'gRPC port (0 = any free port)', default: '0', value: PORT },
  'data-port': {
    type: 'string',
    help: "TCP data-plane port peers pull this worker's KV blocks from (decode workers, the kv-store; 0 = any free port)",
    default: '0',
    value: PORT,
  },
  transports: {
    type: 'string',
    help: 'KV transports this worker receives over, in preference order',
    default: 'tcp,shm,grpc',
    value: listOf(...TRANSPORT_KINDS),
  },
  'kv-offload': {
    type: 'string',
    help: 'on: offload evicted blocks to the kv-store nodes in the registry and prefetch prefixes from them; off: never',
    default: 'on',
    value: oneOf('on', 'off'),
  },
  replicas: { type: 'string', help: 'copies of each offloaded block, on distinct kv-store nodes', default: '1', value: int(1) },
};

/** The worker's kv-store link from --kv-offload and --replicas (undefined: off). */
export function kvStoreLinkOf(f: Flags): { replicas: number } | undefined {
  const mode = f.str('kv-offload') ?? 'on';
  if (mode !== 'on' && mode !== 'off') throw new UsageError(`--kv-offload takes on or off, got "${mode}"`);
  return mode === 'off' ? undefined : { replicas: f.int('replicas', 1) ?? 1 };
}

export async function modelDirFrom(f: Flags): Promise<{ dir: string; id: string }> {
  const given = f.str('model');
  if (given) return { dir: given, id: f.str('served-model-name') ?? given.split('/').filter(Boolean).pop()! };
  const bar = progressBar('building the built-in tiny model (first run only)');
  let built = false;
  const dir = await ensureTinyModel({}, (d, t) => ((built = true), bar.update(d, t)));
  if (built) bar.end();
  return { dir, id: f.str('served-model-name') ?? 'tiny' };
}

/** Warns, where this process loads a model, that it runs without transparent huge pages it could have (huge-pages.ts). */
export function warnHugePages(logger: Logger): void {
  const missing = hugePagesMissing();
  if (missing !== undefined) logger.warn(missing);
}

/** `coLocated`: several engines share this host's cores (serve, start), so by default none spin-waits. */
export function engineOptions(f: Flags, dir: string, id: string, coLocated = false): EngineOptions {
  const spin = f.str('ort-spin') ?? 'auto';
  if (!['on', 'off', 'auto'].includes(spin)) throw new UsageError(`--ort-spin must be on, off or auto, got "${spin}"`);
  return {
    modelDir: dir,
    modelId: id,
    kvCacheBytes: f.bytes('kv-cache-bytes'),
    blockSize: f.int('block-size', 1),
    maxNumSeqs: f.int('max-num-seqs', 1),
    maxNumBatchedTokens: f.int('max-num-batched-tokens', 1),
    prefillChunkTokens: f.int('prefill-chunk-tokens', 0),
    maxWaiting: f.int('max-waiting', 0),
    maxModelLen: f.int('max-model-len', 2),
    runner: {
      executionProvider: f.str('execution-provider'),
      intraOpThreads: f.int('threads', 0),
      allowSpinning: spin === 'auto' ? !coLocated : spin === 'on',
    },
    speculative: speculativeOf(f),
  };
}

export function policyOf(f: Flags): PolicyName {
  const p = f.str('policy') ?? 'kv-aware';
  if (!(POLICY_NAMES as readonly string[]).includes(p))
    throw new UsageError(`--policy must be one of ${POLICY_NAMES.join(', ')}, got "${p}"`);
  return p as PolicyName;
}

export function transportsOf(f: Flags): TransportKind[] {
  const list = (f.str('transports') ?? 'tcp,shm,grpc')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const t of list) if (!isTransportKind(t)) throw new UsageError(`--transports takes tcp, shm and grpc, got "${t}"`);
  return list as TransportKind[];
}

/** Where a service listens and what it advertises: the same flags for workers and kv-store nodes. */
export function listenOptionsOf(f: Flags) {
  return {
    host: f.str('host'),
    advertiseHost: f.str('advertise-host'),
    grpcPort: f.int('grpc-port', 0),
    dataPort: f.int('data-port', 0),
    adminPort: f.int('admin-port', 0),
    transports: transportsOf(f),
    tls: tlsOf(f),
  };
}

export async function controlPlaneOf(f: Flags, service: string): Promise<ControlPlane> {
  return connectControlPlane({
    cluster: f.str('cluster') ?? 'pdserve',
    redisUrl: f.str('redis'),
    natsUrl: f.str('nats'),
    hub: processHub,
    logger: serviceLogger(service, f.str('log-level'), f.str('log-format')),
    registry: { leaseTtlMs: f.int('lease-ttl-ms', 100) },
  });
}

/** Resolves on SIGINT/SIGTERM, once. */
export function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
}

async function runWorker(role: WorkerRole, f: Flags): Promise<void> {
  const logger = serviceLogger(`${role}-worker`, f.str('log-level'), f.str('log-format'));
  warnHugePages(logger);
  const { dir, id } = await modelDirFrom(f);
  const cp = await controlPlaneOf(f, `${role}-worker`);
  const w = await startWorkerService({
    role,
    instanceId: f.str('instance-id'),
    // A prefill worker never decodes: it has no use for a draft model.
    engine: { ...engineOptions(f, dir, id), ...(role === 'prefill' ? { speculative: undefined } : {}) },
    controlPlane: cp,
    logger: logger,
    ...listenOptionsOf(f),
    kvStore: kvStoreLinkOf(f),
  });
  logger.info({ role, instanceId: w.instanceId, grpc: w.grpcAddress, admin: w.adminUrl, model: id, controlPlane: cp.mode }, 'worker ready');
  const sig = await untilSignal();
  logger.info({ signal: sig }, 'draining');
  await w.drain(30_000);
  await cp.close();
}

function workerCommand(role: WorkerRole, name: string, summary: string): CommandSpec {
  return {
    name,
    summary,
    usage: `${name} [--model DIR] [--redis URL --nats URL] [--grpc-port N] [--data-port N] [--admin-port N] [engine flags]`,
    flags: { ...COMMON_FLAGS, ...WORKER_FLAGS, ...ENGINE_FLAGS },
    run: (f) => runWorker(role, f),
  };
}

export const prefillWorker = workerCommand(
  'prefill',
  'prefill-worker',
  'Run a prefill worker: computes prompts, ships their KV to decode workers.',
);
export const decodeWorker = workerCommand(
  'decode',
  'decode-worker',
  'Run a decode worker: receives KV, decodes with continuous batching, streams tokens.',
);
export const mixedWorker = workerCommand('mixed', 'mixed-worker', 'Run a mixed worker: prefill and decode on one engine.');

/** The gateway's admission: SLOs per class and the cost model predicting against them. */
export function admissionOf(f: Flags): AdmissionOptions {
  const path = f.str('cost-model');
  let costModel;
  if (path !== undefined && path !== '') {
    try {
      costModel = parseCostModel(readFileSync(path, 'utf8'), path).cost;
    } catch (err) {
      throw new UsageError(`--cost-model: ${(err as Error).message}`);
    }
  }
  return { ttftSloMs: parseClassSlos(f.str('ttft-slo-ms')), itlSloMs: parseClassSlos(f.str('itl-slo-ms')), costModel };
}

function gatewayFromFlags(
  f: Flags,
  dir: string,
  id: string,
  cp: ControlPlane,
  logger: Logger,
  tls: TlsMaterial | undefined,
): Promise<Gateway> {
  return startGateway({
    modelDir: dir,
    modelId: id,
    controlPlane: cp,
    logger,
    host: f.str('host'),
    port: f.int('port', 0),
    adminPort: f.int('admin-port', 0),
    blockSize: f.int('block-size', 1),
    policy: policyOf(f),
    disagg: { remotePrefillMinTokens: f.int('remote-prefill-min-tokens', 0), prefillQueueMaxTokens: f.int('prefill-queue-max-tokens', 0) },
    maxModelLen: f.int('max-model-len', 2),
    edge: edgeOptionsOf(f),
    migrationLimit: f.int('migration-limit', 0),
    kvStreaming: f.str('kv-streaming') !== 'off',
    decodeComputesTail: f.str('decode-computes-tail') !== 'off',
    admission: admissionOf(f),
    tls,
  });
}

export const gateway: CommandSpec = {
  name: 'gateway',
  summary: 'Run the gateway: the OpenAI HTTP API and the KV-aware router in front of the workers.',
  usage: 'gateway [--model DIR] [--port 8000] [--redis URL --nats URL] [--policy kv-aware]',
  flags: {
    ...COMMON_FLAGS,
    ...ROUTER_FLAGS,
    ...EDGE_FLAGS,
    'block-size': ENGINE_FLAGS['block-size']!,
    'max-model-len': ENGINE_FLAGS['max-model-len']!,
  },
  check: checkEdge,
  async run(f) {
    const logger = serviceLogger('gateway', f.str('log-level'), f.str('log-format'));
    edgeOptionsOf(f); // the key file is read before the model loads
    const { dir, id } = await modelDirFrom(f);
    const cp = await controlPlaneOf(f, 'gateway');
    const gw = await gatewayFromFlags(f, dir, id, cp, logger, tlsOf(f));
    logger.info({ url: gw.url, admin: gw.adminUrl, model: id, controlPlane: cp.mode }, 'gateway listening');
    await gw.ready();
    logger.info({ url: gw.url, workers: gw.view.workers().length }, 'gateway ready');
    await untilSignal();
    await gw.close();
    await cp.close();
  },
};

/** A local cluster runs in one process (neither --redis nor --nats) or as processes sharing both. */
export function checkLocalCluster(f: Flags): void {
  if (Boolean(f.str('redis')) !== Boolean(f.str('nats'))) throw new UsageError('a multi-process cluster needs both --redis and --nats');
}

/**
 * A local cluster. With --redis and --nats: separate processes (gateway, N prefill, M decode). Without:
 * every service in this process on the embedded control plane (each worker still has its own engine
 * thread and gRPC server, and they talk over loopback exactly as separate processes do).
 */
export async function runLocalCluster(f: Flags, prefill: number, decode: number, kvStores = 0): Promise<void> {
  checkLocalCluster(f);
  edgeOptionsOf(f); // the key file is read before any service starts
  const { dir, id } = await modelDirFrom(f);
  const local = localTlsOf(f);
  try {
    if (f.str('redis') && f.str('nats')) return await spawnCluster(f, dir, id, prefill, decode, kvStores, local.dir);
    await runInProcess(f, dir, id, prefill, decode, kvStores, local.tls);
  } finally {
    local.dispose();
  }
}

async function runInProcess(
  f: Flags,
  dir: string,
  id: string,
  prefill: number,
  decode: number,
  kvStores: number,
  tls: TlsMaterial | undefined,
): Promise<void> {
  const logger = serviceLogger('pdserve', f.str('log-level'), f.str('log-format'));
  warnHugePages(logger);
  const cp = await controlPlaneOf(f, 'pdserve');
  const engine = engineOptions(f, dir, id, true);
  const stores = [];
  for (let i = 0; i < kvStores; i++)
    stores.push(
      await startKvStoreService({
        nodeId: `kv-store-${i}`,
        controlPlane: cp,
        logger: logger,
        host: f.str('host'),
        memoryBytes: LOCAL_KV_STORE_BYTES,
        models: [{ id }],
        tls,
      }),
    );
  const kvStore = kvStores > 0 ? { replicas: Math.min(kvStores, f.int('replicas', 1) ?? 1) } : undefined;
  const workers = [];
  for (let i = 0; i < prefill; i++)
    workers.push(
      await startWorkerService({
        role: 'prefill',
        instanceId: `prefill-${i}`,
        engine: { ...engine, speculative: undefined },
        controlPlane: cp,
        logger: logger,
        host: f.str('host'),
        kvStore,
        tls,
      }),
    );
  for (let i = 0; i < decode; i++)
    workers.push(
      await startWorkerService({
        role: decode > 0 && prefill === 0 ? 'mixed' : 'decode',
        instanceId: `decode-${i}`,
        engine,
        controlPlane: cp,
        logger: logger,
        host: f.str('host'),
        kvStore,
        tls,
      }),
    );
  const gw = await gatewayFromFlags(f, dir, id, cp, logger, tls);
  await gw.ready();
  process.stdout.write(
    `pdserve is serving ${id} at ${gw.url}/v1 (OpenAI API): gateway + ${prefill} prefill + ${decode} decode${kvStores > 0 ? ` + ${kvStores} kv-store` : ''}, embedded control plane, ${tls ? 'mTLS inside' : 'plaintext inside (--tls off)'}.${gw.adminUrl ? ` Status: ${gw.adminUrl}/status.` : ''} Ctrl-C stops it.\n`,
  );
  await untilSignal();
  await gw.close();
  await Promise.all(workers.map((w) => w.drain(10_000)));
  await Promise.all(stores.map((s) => s.close()));
  await cp.close();
}

/** Memory tier of each kv-store a local cluster starts. */
const LOCAL_KV_STORE_BYTES = 256 * 1024 * 1024;

/** Runs another pdserve command the way this one runs: `--import tsx main.ts` in a checkout, bin/pdserve.mjs in the image. */
function spawnService(args: readonly string[], env: Readonly<Record<string, string>> = {}): ChildProcess {
  return spawn(process.execPath, [...process.execArgv, process.argv[1]!, ...args], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: withHugePages({ ...process.env, ...env }),
  });
}

async function spawnCluster(
  f: Flags,
  dir: string,
  id: string,
  prefill: number,
  decode: number,
  kvStores: number,
  tlsDir: string | undefined,
): Promise<void> {
  const tlsArgs = tlsDir === undefined ? ['--tls', 'off'] : ['--tls', 'on', '--tls-dir', tlsDir];
  const shared = [
    ...tlsArgs,
    '--model',
    dir,
    '--served-model-name',
    id,
    '--redis',
    f.str('redis')!,
    '--nats',
    f.str('nats')!,
    '--cluster',
    f.str('cluster') ?? 'pdserve',
    '--log-level',
    f.str('log-level') ?? 'info',
    '--lease-ttl-ms',
    f.str('lease-ttl-ms') ?? '10000',
  ];
  // Every worker runs on this host: with `--ort-spin auto`, none spin-waits.
  const engineArgs = Object.keys(ENGINE_FLAGS).flatMap((k) => {
    const v = k === 'ort-spin' && (f.str(k) ?? 'auto') === 'auto' ? 'off' : f.str(k);
    return v !== undefined ? [`--${k}`, v] : [];
  });
  const children: ChildProcess[] = [];
  for (let i = 0; i < kvStores; i++)
    children.push(spawnService(['kv-store', ...shared, '--instance-id', `kv-store-${i}`, '--memory-bytes', String(LOCAL_KV_STORE_BYTES)]));
  const link = kvStores > 0 ? ['--replicas', String(Math.min(kvStores, f.int('replicas', 1) ?? 1))] : ['--kv-offload', 'off'];
  for (let i = 0; i < prefill; i++)
    children.push(spawnService(['prefill-worker', ...shared, ...engineArgs, ...link, '--instance-id', `prefill-${i}`]));
  for (let i = 0; i < decode; i++)
    children.push(spawnService(['decode-worker', ...shared, ...engineArgs, ...link, '--instance-id', `decode-${i}`]));
  const routerArgs = Object.keys(ROUTER_FLAGS).flatMap((k) => (f.str(k) !== undefined ? [`--${k}`, f.str(k)!] : []));
  const edge = edgeForChild(f);
  children.push(
    spawnService(
      ['gateway', ...shared, ...routerArgs, ...edge.args, '--block-size', f.str('block-size') ?? String(ENGINE_DEFAULTS.blockSize)],
      edge.env,
    ),
  );
  const stop = (): void => children.forEach((c) => c.kill('SIGTERM'));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const exited = Promise.all(children.map((c) => new Promise((r) => c.once('exit', r))));
  const url = `http://${f.str('host') ?? '127.0.0.1'}:${f.int('port', 0) ?? 8000}`;
  const gaveUp = new AbortController();
  children.forEach((c) => c.once('exit', () => gaveUp.abort()));
  // The URL is printed only once the gateway says a completion can be served (its /ready).
  if (await untilReady(`${url}/ready`, gaveUp.signal)) {
    process.stdout.write(
      `pdserve is serving ${id} at ${url}/v1 (OpenAI API): gateway + ${prefill} prefill + ${decode} decode${kvStores > 0 ? ` + ${kvStores} kv-store` : ''}, separate processes sharing Redis and NATS, ${tlsDir === undefined ? 'plaintext inside (--tls off)' : 'mTLS inside'}. Ctrl-C stops it.\n`,
    );
  } else {
    stop(); // a service exited before the cluster could serve: stop the rest
  }
  await exited;
}

/** Polls a readiness URL until it answers 200 (true) or `signal` aborts (false). */
async function untilReady(url: string, signal: AbortSignal): Promise<boolean> {
  while (!signal.aborted) {
    try {
      const res = await fetch(url);
      await res.body?.cancel();
      if (res.ok) return true;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}
