// The chart and the CLI agree: every container the chart renders runs a pdserve command with flags that
// command's own parser accepts, with values its own converters accept, on the ports the pod declares.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { COMMANDS, engineOptions, envName, parseFlags, policyOf, transportsOf, type CommandSpec, type Flags } from '@pdserve/cli';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';

const ROOT = join(import.meta.dirname, '..', '..');
const CHART = join(ROOT, 'helm', 'pdserve');

interface Manifest {
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly labels?: Readonly<Record<string, string>> };
  readonly spec?: Record<string, unknown>;
  readonly data?: Readonly<Record<string, string>>;
  readonly stringData?: Readonly<Record<string, string>>;
}

/** What the downward API would give a pod; the values only need to look real. */
const FIELD_REFS: Readonly<Record<string, string>> = {
  'metadata.name': 'pd-pdserve-decode-7d9f-x2x1',
  'metadata.namespace': 'llm',
  'status.podIP': '10.1.2.3',
};

/** What the Secrets a profile names but does not render (existingSecret) would hold. */
const EXISTING_SECRETS: Readonly<Record<string, string>> = {
  'pdserve-control-plane/redis-url': 'redis://:password@redis.infra:6379',
  'pdserve-control-plane/nats-url': 'nats://pdserve:password@nats.infra:4222',
};

/** Each flag that names a port, and the container port it must equal. */
const PORT_FLAGS: Readonly<Record<string, string>> = { port: 'http', 'admin-port': 'admin', 'grpc-port': 'grpc', 'data-port': 'data' };

/** Every engine value the schema allows, so each one's flag is checked, not only the profiles' few. */
const ALL_ENGINE_VALUES = [
  'kvCacheBytes=1.5Gi',
  'maxNumSeqs=8',
  'maxNumBatchedTokens=512',
  'prefillChunkTokens=0',
  'maxWaiting=10',
  'maxModelLen=1024',
  'threads=2',
];
const VARIANTS: Readonly<Record<string, readonly string[]>> = {
  default: [],
  ascend: ['-f', 'ci/ascend.yaml'],
  nvidia: ['-f', 'ci/nvidia.yaml'],
  'edge values': [
    '--set',
    'gateway.apiKeys.existingSecret=team-keys',
    '--set',
    'gateway.isolateCachePerKey=true',
    '--set-json',
    'gateway.limits={"rateLimit":0.5,"rateLimitBurst":10,"maxConcurrentPerKey":2}',
    '--set-json',
    'gateway.http={"headersTimeoutMs":5000,"requestTimeoutMs":20000,"keepAliveTimeoutMs":4000,"maxConnections":1000,"writeTimeoutMs":15000,"maxPromptChars":200000}',
  ],
  'speculative decoding': [
    '--set',
    'decode.speculative.method=draft',
    '--set',
    'decode.speculative.model=/models/draft',
    '--set',
    'decode.speculative.numTokens=3',
  ],
  'mTLS from cert-manager': ['--api-versions', 'cert-manager.io/v1'],
  'every engine value': [
    '--set',
    'model.servedModelName=tiny-chat',
    '--set',
    'gateway.routerPolicy=session-affinity',
    ...['prefill', 'decode'].flatMap((pool) => ALL_ENGINE_VALUES.flatMap((v) => ['--set', `${pool}.engine.${v}`])),
  ],
};

let helmBin = '';
function render(args: readonly string[]): Manifest[] {
  const r = spawnSync(helmBin, ['template', 'pd', '.', '--namespace', 'llm', ...args], {
    cwd: CHART,
    encoding: 'utf8',
    maxBuffer: 64 * 2 ** 20,
  });
  if (r.status !== 0) throw new Error(`helm template ${args.join(' ')} failed:\n${r.stderr}`);
  return parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as Manifest | null)
    .filter((d): d is Manifest => d !== null);
}

/** `pdserve <command> ...` as run.ts resolves it: the longest command name that prefixes the args. */
function commandOf(args: readonly string[]): { spec: CommandSpec; rest: string[] } | undefined {
  const spec = [...COMMANDS].sort((a, b) => b.name.length - a.name.length).find((c) => c.name.split(' ').every((w, i) => args[i] === w));
  return spec && { spec, rest: args.slice(spec.name.split(' ').length) };
}

/** The container's environment as Kubernetes builds it: envFrom ConfigMaps, then env (which wins). */
function containerEnv(
  c: IContainer,
  configMaps: ReadonlyMap<string, Readonly<Record<string, string>>>,
  secrets: ReadonlyMap<string, Readonly<Record<string, string>>>,
): Map<string, string> {
  const env = new Map<string, string>();
  for (const from of c.envFrom ?? []) {
    const data = configMaps.get(from.configMapRef?.name ?? '');
    if (!data) throw new Error(`${c.name}: envFrom a ConfigMap the chart does not render: ${from.configMapRef?.name}`);
    for (const [k, v] of Object.entries(data)) env.set(k, v);
  }
  for (const e of c.env ?? []) {
    const field = e.valueFrom?.fieldRef?.fieldPath;
    const ref = e.valueFrom?.secretKeyRef;
    const secret = ref ? (secrets.get(ref.name ?? '')?.[ref.key] ?? EXISTING_SECRETS[`${ref.name}/${ref.key}`]) : undefined;
    if (ref && secret === undefined)
      throw new Error(`${c.name}: ${e.name} names ${ref.name}/${ref.key}, which no rendered or expected Secret holds`);
    env.set(e.name, e.value ?? secret ?? (field ? (FIELD_REFS[field] ?? `<${field}>`) : '<from elsewhere>'));
  }
  return env;
}

/** Kubernetes' $(VAR) expansion of args; an unknown variable would stay literal, which is a chart bug here. */
function expand(arg: string, env: ReadonlyMap<string, string>, where: string): string {
  return arg.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_, name: string) => {
    const v = env.get(name);
    if (v === undefined) throw new Error(`${where}: ${arg} names $(${name}), which the container's environment lacks`);
    return v;
  });
}

/** Parses with the pod's PDSERVE_* environment in place, as the CLI in that pod would see it. */
function parseInPod(spec: CommandSpec, argv: readonly string[], env: ReadonlyMap<string, string>): Flags {
  const saved = new Map(Object.keys(spec.flags).map((f) => [envName(f), process.env[envName(f)]] as const));
  try {
    for (const name of saved.keys()) {
      const v = env.get(name);
      if (v === undefined) delete process.env[name];
      else process.env[name] = v;
    }
    const flags = parseFlags(spec, argv);
    if (flags === 'help') throw new Error('--help in container args');
    return flags;
  } finally {
    for (const [name, v] of saved)
      if (v === undefined) delete process.env[name];
      else process.env[name] = v;
  }
}

/** The conversions each command's run() applies to its flags, without starting anything. */
function checkValues(command: string, f: Flags): void {
  for (const name of ['port', 'admin-port', 'grpc-port', 'data-port', 'lease-ttl-ms']) {
    if (f.str(name) === undefined) continue;
    const n = f.int(name, 0)!;
    if (name.endsWith('port') && n > 65535) throw new Error(`--${name}=${n} is not a port`);
  }
  if (command === 'gateway') {
    policyOf(f);
    f.int('block-size', 1);
    f.int('max-model-len', 2);
    f.int('remote-prefill-min-tokens', 0);
    f.int('prefill-queue-max-tokens', 0);
  }
  if (command.endsWith('-worker')) {
    engineOptions(f, f.required('model'), 'model');
    transportsOf(f);
  }
  if (command === 'kv-store') {
    f.bytes('memory-bytes');
    f.bytes('disk-bytes');
    f.int('block-size', 1);
    transportsOf(f);
  }
}

interface Checked {
  readonly where: string;
  readonly command: string;
  readonly flags: Flags;
}

/** Every pdserve container of a render, parsed; `skip` lists the commands this CLI does not have yet. */
function checkRender(docs: readonly Manifest[], skip: ReadonlySet<string> = new Set()): Checked[] {
  const configMaps = new Map(docs.filter((d) => d.kind === 'ConfigMap').map((d) => [d.metadata.name, d.data ?? {}] as const));
  const secrets = new Map(docs.filter((d) => d.kind === 'Secret').map((d) => [d.metadata.name, d.stringData ?? {}] as const));
  const checked: Checked[] = [];
  for (const w of docs.filter((d) => d.kind === 'Deployment' || d.kind === 'StatefulSet' || d.kind === 'Pod')) {
    const component = w.metadata.labels?.['app.kubernetes.io/component'] ?? '';
    if (component === 'redis' || component === 'nats') continue;
    const pod = w.kind === 'Pod' ? (w.spec as unknown as IPodSpec) : (w.spec!['template'] as { spec: IPodSpec }).spec;
    // The CLI takes PDSERVE_* variables as flags; Service links of a release named pdserve look just like them.
    if (pod.enableServiceLinks !== false) throw new Error(`${w.kind}/${w.metadata.name}: enableServiceLinks must be false`);
    for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
      const where = `${w.kind}/${w.metadata.name} container ${c.name}`;
      if (c.command !== undefined) throw new Error(`${where}: sets command; the image's entrypoint is the pdserve CLI`);
      const env = containerEnv(c, configMaps, secrets);
      const args = (c.args ?? []).map((a) => expand(a, env, where));
      const cmd = commandOf(args);
      if (!cmd && skip.has(args[0] ?? '')) continue;
      if (!cmd) throw new Error(`${where}: "${args[0]}" is not a pdserve command (${COMMANDS.map((x) => x.name).join(', ')})`);
      let flags: Flags;
      try {
        flags = parseInPod(cmd.spec, cmd.rest, env);
        checkValues(cmd.spec.name, flags);
      } catch (err) {
        throw new Error(`${where}: pdserve ${cmd.spec.name} rejects its args: ${(err as Error).message}\n  args: ${args.join(' ')}`);
      }
      for (const [flag, portName] of Object.entries(PORT_FLAGS)) {
        if (!cmd.rest.some((a) => a === `--${flag}` || a.startsWith(`--${flag}=`))) continue;
        const declared = c.ports?.find((p) => p.name === portName)?.containerPort;
        if (declared !== Number(flags.str(flag)))
          throw new Error(`${where}: --${flag}=${flags.str(flag)} but container port "${portName}" is ${declared}`);
      }
      checked.push({ where, command: cmd.spec.name, flags });
    }
  }
  return checked;
}

const hasKvStore = COMMANDS.some((c) => c.name === 'kv-store');
const KV_STORE_PENDING = hasKvStore ? '' : ' [kv-store: the CLI has no kv-store command yet; its StatefulSet args are not checked]';
const rendered = new Map<string, Manifest[]>();

beforeAll(() => {
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'tools.mjs'), 'helm'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cannot get helm: ${r.stderr}`);
  helmBin = r.stdout.trim();
  for (const [name, args] of Object.entries(VARIANTS)) rendered.set(name, render(args));
});

describe('the chart runs the CLI it ships', () => {
  it.each(Object.keys(VARIANTS))(
    `%s: every gateway, worker, init and helm test container parses with its command's flags${KV_STORE_PENDING}`,
    (variant) => {
      const checked = checkRender(rendered.get(variant)!, hasKvStore ? new Set() : new Set(['kv-store']));
      const commands = new Set(checked.map((c) => c.command));
      for (const c of ['gateway', 'prefill-worker', 'decode-worker', 'bench']) expect(commands, `${variant} runs ${c}`).toContain(c);
      if (hasKvStore) expect(commands).toContain('kv-store');
      // Peers dial workers at their pod IP; every engine shares one block size and model name.
      for (const { where, flags } of checked.filter((c) => c.command.endsWith('-worker'))) {
        expect(flags.str('advertise-host'), where).toBe(FIELD_REFS['status.podIP']);
        expect(flags.str('host'), where).toBe('0.0.0.0');
        expect(flags.str('redis'), where).toMatch(/^redis:\/\//);
        expect(flags.str('data-port'), `${where} serves KV on a fixed port the NetworkPolicy opens`).toBe('50052');
        expect(flags.str('tls'), where).toBe(variant === 'mTLS from cert-manager' ? 'on' : 'off');
        if (variant === 'mTLS from cert-manager') expect(flags.str('tls-dir'), where).toBe('/etc/pdserve/tls');
      }
      const engines = checked.filter((c) => c.command === 'gateway' || c.command.endsWith('-worker'));
      expect(new Set(engines.map((c) => c.flags.str('block-size'))).size, 'one block size').toBe(1);
      expect(new Set(engines.map((c) => c.flags.str('served-model-name') ?? c.flags.str('model'))).size, 'one model').toBe(1);
    },
  );

  it('passes every engine value and the router policy through under the CLI flag names', () => {
    const checked = checkRender(rendered.get('every engine value')!, new Set(['kv-store']));
    const decode = checked.find((c) => c.command === 'decode-worker')!.flags;
    const opts = engineOptions(decode, decode.required('model'), 'tiny-chat');
    expect(opts).toMatchObject({
      kvCacheBytes: 1.5 * 2 ** 30,
      maxNumSeqs: 8,
      maxNumBatchedTokens: 512,
      prefillChunkTokens: 0,
      maxWaiting: 10,
      maxModelLen: 1024,
    });
    expect(opts.runner).toMatchObject({ intraOpThreads: 2 });
    const gateway = checked.find((c) => c.command === 'gateway')!.flags;
    expect(policyOf(gateway)).toBe('session-affinity');
    expect(gateway.str('served-model-name')).toBe('tiny-chat');
    expect(gateway.str('max-model-len'), 'the gateway refuses what no worker would take').toBe('1024');
  });

  it("passes decode.speculative to the decode workers only, as the engine's speculative options", () => {
    const checked = checkRender(rendered.get('speculative decoding')!, new Set(['kv-store']));
    const decode = checked.find((c) => c.command === 'decode-worker')!.flags;
    expect(engineOptions(decode, decode.required('model'), 'tiny').speculative).toEqual({
      method: 'draft',
      modelDir: '/models/draft',
      numTokens: 3,
    });
    expect(checked.find((c) => c.command === 'prefill-worker')!.flags.str('speculative')).toBe('off');
    const plain = checkRender(rendered.get('default')!, new Set(['kv-store']));
    expect(engineOptions(plain.find((c) => c.command === 'decode-worker')!.flags, 'm', 'tiny').speculative).toBeUndefined();
  });

  it('passes the edge values to the gateway under the CLI flag names, and the key file to the test hook', () => {
    const checked = checkRender(rendered.get('edge values')!, new Set(['kv-store']));
    const gateway = checked.find((c) => c.command === 'gateway')!.flags;
    expect({
      keyFile: gateway.str('api-key-file'),
      isolate: gateway.bool('isolate-cache-per-key'),
      rate: gateway.num('rate-limit'),
      burst: gateway.int('rate-limit-burst'),
      concurrent: gateway.int('max-concurrent-per-key'),
      headers: gateway.int('headers-timeout-ms'),
      request: gateway.int('request-timeout-ms'),
      keepAlive: gateway.int('keep-alive-timeout-ms'),
      connections: gateway.int('max-connections'),
      write: gateway.int('write-timeout-ms'),
      chars: gateway.int('max-prompt-chars'),
    }).toEqual({
      keyFile: '/etc/pdserve/api-keys/api-keys',
      isolate: true,
      rate: 0.5,
      burst: 10,
      concurrent: 2,
      headers: 5000,
      request: 20000,
      keepAlive: 4000,
      connections: 1000,
      write: 15000,
      chars: 200000,
    });
    expect(checked.find((c) => c.command === 'bench')!.flags.str('api-key-file')).toBe('/etc/pdserve/api-keys/api-keys');
  });

  it('gives the gateway the shortest max-model-len of the worker pools, and none when no pool sets one', () => {
    const gatewayOf = (docs: Manifest[]): Flags => checkRender(docs, new Set(['kv-store'])).find((c) => c.command === 'gateway')!.flags;
    expect(
      gatewayOf(render(['--set', 'prefill.engine.maxModelLen=4096', '--set', 'decode.engine.maxModelLen=2048'])).str('max-model-len'),
    ).toBe('2048');
    expect(gatewayOf(render(['--set', 'decode.engine.maxModelLen=3000'])).str('max-model-len')).toBe('3000');
    expect(gatewayOf(rendered.get('default')!).str('max-model-len')).toBeUndefined();
  });

  it('fails on a flag the CLI does not know, a bad value, or a port that disagrees with the pod', () => {
    const bad = (set: string): Manifest[] => render(['--set-json', set]);
    expect(() => checkRender(bad('gateway.extraArgs=["--router-policy=kv-aware"]'), new Set(['kv-store']))).toThrow(
      /gateway.*Unknown option '--router-policy'/s,
    );
    expect(() => checkRender(bad('decode.extraArgs=["--transports=rdma"]'), new Set(['kv-store']))).toThrow(
      /--transports takes a comma-separated list of tcp, shm, grpc, got "rdma"/,
    );
    expect(() => checkRender(bad('prefill.extraArgs=["--admin-port=9999"]'), new Set(['kv-store']))).toThrow(
      /--admin-port=9999 but container port "admin" is 9090/,
    );
  });
});
