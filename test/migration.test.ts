// Request migration in one process (embedded control plane, gRPC over loopback): a decode worker that dies,
// or drains, after tokens went out; the gateway resumes the stream on another decode worker from prompt +
// the tokens sent. The client sees one unbroken stream, token-identical to the reference loop, greedy and
// seeded, with correct usage. Past --migration-limit: an error event, then [DONE].
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@pdserve/api';
import { connectControlPlane, InProcessHub, silentLogger as cpSilent, type ControlPlane } from '@pdserve/control-plane';
import { startGateway, type Gateway } from '@pdserve/gateway';
import { ensureTinyModel, loadModelSpec, ModelRunner, referenceGenerate, samplingParams } from '@pdserve/model';
import { Tokenizer } from '@pdserve/tokenizer';
import { completion } from '@pdserve/testkit';
import { startWorkerService, type WorkerService } from '@pdserve/worker';

let dir: string;
let runner: ModelRunner;
let tokenizer: Tokenizer;
let cp: ControlPlane;
let gateway: Gateway;
let noMigration: Gateway;
const decodes = new Map<string, WorkerService>();
let nextId = 0;
const engine = (): { modelDir: string; modelId: string; kvCacheBytes: number } => ({
  modelDir: dir,
  modelId: 'tiny',
  kvCacheBytes: 64 * 1024 * 1024,
});

async function addDecode(): Promise<void> {
  const id = `d${nextId++}`;
  decodes.set(id, await startWorkerService({ role: 'mixed', instanceId: id, engine: engine(), controlPlane: cp, logger: cpSilent }));
}

/** The decode worker that is generating right now. */
function busyWorker(): [string, WorkerService] {
  const busy = [...decodes].filter(([, w]) => w.engine.stats().running > 0);
  if (busy.length !== 1) throw new Error(`expected one busy worker, found ${busy.length}`);
  return busy[0]!;
}

async function reference(prompt: string, maxTokens: number, temperature: number, seed?: number): Promise<string> {
  const ids = tokenizer.encode(prompt);
  const ref = await referenceGenerate(runner, ids, samplingParams({ temperature, seed, maxTokens, ignoreEos: true }));
  return completion(tokenizer, ids, ref.tokenIds);
}

beforeAll(async () => {
  dir = await ensureTinyModel();
  runner = await ModelRunner.create(loadModelSpec(dir));
  tokenizer = await Tokenizer.fromDir(dir);
  cp = await connectControlPlane({ cluster: 'migrate', hub: new InProcessHub(), logger: cpSilent });
  for (let i = 0; i < 3; i++) await addDecode();
  gateway = await openGateway({ policy: 'round-robin' });
  noMigration = await openGateway({ policy: 'round-robin', migrationLimit: 0 });
  for (let i = 0; i < 200 && (gateway.view.workers().length < 3 || noMigration.view.workers().length < 3); i++)
    await new Promise((r) => setTimeout(r, 20));
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  await noMigration?.close();
  await Promise.all([...decodes.values()].map((w) => w.close().catch(() => undefined)));
  await cp?.close();
  await runner?.release();
});

/** A gateway of this cluster (tiny, the in-process control plane, a free port) with these options. */
function openGateway(extra: Partial<Parameters<typeof startGateway>[0]>): Promise<Gateway> {
  return startGateway({ modelDir: dir, modelId: 'tiny', controlPlane: cp, logger: silentLogger, port: 0, ...extra });
}

/** A greedy, non-streamed completion request to `g` (the body's fields override). */
function postCompletion(g: Gateway, body: Record<string, unknown>): Promise<Response> {
  return fetch(`${g.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tiny', temperature: 0, ...body }),
  });
}

/** Streams a completion; after `breakAfter` chunks with text, `fault` runs once (on the busy worker). */
async function streamWithFault(
  g: Gateway,
  body: Record<string, unknown>,
  breakAfter: number,
  fault: (w: WorkerService, id: string) => Promise<void>,
) {
  const client = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: 'x', maxRetries: 0 });
  const stream = await client.completions.create({
    model: 'tiny',
    stream: true,
    stream_options: { include_usage: true },
    ...body,
  } as unknown as OpenAI.CompletionCreateParamsStreaming);
  let text = '';
  let chunks = 0;
  let faulted: string | undefined;
  let usage: OpenAI.CompletionUsage | undefined;
  let finish: string | null | undefined;
  for await (const c of stream) {
    text += c.choices[0]?.text ?? '';
    finish = c.choices[0]?.finish_reason ?? finish;
    if (c.usage) usage = c.usage;
    if ((c.choices[0]?.text ?? '') !== '' && ++chunks === breakAfter && faulted === undefined) {
      const [id, w] = busyWorker();
      faulted = id;
      await fault(w, id);
    }
  }
  return { text, usage, finish, faulted };
}

const migrations = async (g: Gateway, outcome: string): Promise<number> => {
  const m = (await g.registry.getSingleMetric('pdserve_migrations_total')?.get())?.values.find((v) => v.labels['outcome'] === outcome);
  return m?.value ?? 0;
};

describe('request migration', () => {
  const cases = [
    { name: 'greedy', temperature: 0, seed: undefined },
    { name: 'seeded', temperature: 0.9, seed: 42 },
  ];
  for (const c of cases) {
    it(`${c.name}: a decode worker killed mid-stream; the stream resumes elsewhere, token-identical`, async () => {
      const prompt = `Migrate this ${c.name} stream when its worker dies`;
      const maxTokens = 160;
      const want = await reference(prompt, maxTokens, c.temperature, c.seed);
      const before = await migrations(gateway, 'resumed');
      const got = await streamWithFault(
        gateway,
        { prompt, max_tokens: maxTokens, temperature: c.temperature, seed: c.seed, ignore_eos: true },
        3,
        async (w, id) => {
          decodes.delete(id);
          await w.close(); // as a crash: its gRPC server goes away mid-stream
        },
      );
      expect(got.faulted).toBeDefined();
      expect(got.text).toBe(want);
      expect(got.finish).toBe('length');
      expect(got.usage?.completion_tokens).toBe(maxTokens);
      expect(got.usage?.prompt_tokens).toBe(tokenizer.encode(prompt).length);
      expect(await migrations(gateway, 'resumed')).toBe(before + 1);
      await addDecode();
      for (let i = 0; i < 200 && gateway.view.workers().filter((w) => decodes.has(w.id)).length < 3; i++)
        await new Promise((r) => setTimeout(r, 20));
    });
  }

  it('a drained worker ends its streams; they resume elsewhere, token-identical', async () => {
    const prompt = 'Drain the worker under this stream';
    const want = await reference(prompt, 160, 0.7, 9);
    const got = await streamWithFault(
      gateway,
      { prompt, max_tokens: 160, temperature: 0.7, seed: 9, ignore_eos: true },
      2,
      async (w, id) => {
        decodes.delete(id);
        void w.drain(0);
      },
    );
    expect(got.text).toBe(want);
    expect(got.usage?.completion_tokens).toBe(160);
    await addDecode();
  });

  it('past --migration-limit the stream ends with an error event, then [DONE]', async () => {
    for (let i = 0; i < 200 && noMigration.view.workers().filter((w) => decodes.has(w.id)).length < 3; i++)
      await new Promise((r) => setTimeout(r, 20));
    const res = await fetch(`${noMigration.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', prompt: 'No second chances', max_tokens: 400, temperature: 0, ignore_eos: true, stream: true }),
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let body = '';
    let killed = false;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      body += new TextDecoder().decode(value);
      if (!killed && body.split('data: ').length > 4) {
        killed = true;
        const [id, w] = busyWorker();
        decodes.delete(id);
        await w.close();
      }
    }
    const events = body.split('\n\n').filter(Boolean);
    expect(events.at(-1)).toBe('data: [DONE]');
    const error = JSON.parse(events.at(-2)!.slice('data: '.length)) as { error?: { type: string } };
    expect(error.error?.type).toBe('server_error');
    expect(await migrations(noMigration, 'exhausted')).toBe(1);
    await addDecode();
  });

  it('SLO admission: a class whose predicted TTFT misses its SLO gets 429 with the computed Retry-After; priority without one is served', async () => {
    // 50 ms per prompt token, so any prompt is predicted far past a 100 ms SLO for the default class.
    const g = await openGateway({ admission: { ttftSloMs: { default: 100 }, costModel: { prefillSecondsPerToken: 0.05 } } });
    try {
      for (let i = 0; i < 200 && g.view.workers().length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      const post = (body: object) => postCompletion(g, { prompt: 'Admit me if you can', max_tokens: 4, ...body });
      const refused = await post({});
      expect(refused.status).toBe(429);
      const promptTokens = tokenizer.encode('Admit me if you can').length;
      // Predicted ≈ promptTokens × 50 ms (+ a decode step): Retry-After is what is left after the 100 ms SLO, rounded up.
      expect(Number(refused.headers.get('retry-after'))).toBe(Math.ceil(promptTokens * 0.05 + 0.0032 - 0.1));
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('queue_full');
      const served = await post({ service_tier: 'priority' });
      expect(served.status, await served.clone().text()).toBe(200);
      const m = await g.registry.getSingleMetric('pdserve_admission_decisions_total')?.get();
      const count = (cls: string, decision: string) =>
        m?.values.find((v) => v.labels['class'] === cls && v.labels['decision'] === decision)?.value;
      expect([count('default', 'refused'), count('priority', 'admitted'), count('flex', 'refused')]).toEqual([1, 1, 0]);
      // No load left behind by the refused request.
      for (const w of g.view.workers()) expect(g.router.load(w.id).inFlight).toBeLessThanOrEqual(1);
    } finally {
      await g.close();
    }
  });
  it('a crashed worker still in the registry is not routed to: a gateway finds it unreachable and leaves it out', async () => {
    const [id, crashed] = [...decodes][0]!;
    decodes.delete(id);
    await crashed.close(); // no deregister: its entry stays until the lease expires
    const g = await openGateway({ policy: 'round-robin' });
    try {
      const routable = (v: Gateway) => v.view.workers().map((w) => w.id);
      for (let i = 0; i < 200 && (routable(g).includes(id) || routable(g).length < decodes.size); i++)
        await new Promise((r) => setTimeout(r, 20));
      expect(g.view.record(id)).toBeDefined(); // still registered
      expect(routable(g).sort()).toEqual([...decodes.keys()].sort());
      for (let i = 0; i < 2 * decodes.size; i++) {
        const res = await postCompletion(g, { prompt: `Only the living ${i}`, max_tokens: 2 });
        expect(res.status, await res.clone().text()).toBe(200);
      }
      // The gateway that knew it alive learns it from the first request sent there, and routes around it.
      for (let i = 0; i < 2 * (decodes.size + 1); i++) {
        const res = await postCompletion(gateway, { prompt: `Round and round ${i}`, max_tokens: 2 });
        expect(res.status, await res.clone().text()).toBe(200);
      }
      expect(routable(gateway)).not.toContain(id);
    } finally {
      await g.close();
    }
    await addDecode();
  });
});

describe('request migration under a grammar', () => {
  it('a json_schema stream whose worker dies resumes with the grammar rebuilt from the tokens sent: the same JSON, valid', async () => {
    for (let i = 0; i < 200 && gateway.view.workers().filter((w) => decodes.has(w.id)).length < 3; i++)
      await new Promise((r) => setTimeout(r, 20));
    const schema = {
      type: 'object',
      properties: {
        items: {
          type: 'array',
          minItems: 12,
          maxItems: 12,
          items: {
            type: 'object',
            properties: { n: { type: 'integer', minimum: 0, maximum: 999 }, ok: { type: 'boolean' } },
            required: ['n', 'ok'],
          },
        },
      },
      required: ['items'],
    };
    const body = {
      prompt: 'Twelve readings as JSON',
      max_tokens: 600,
      temperature: 0,
      response_format: { type: 'json_schema', json_schema: { name: 'r', schema } },
    };
    const client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const unbroken = await client.completions.create({ model: 'tiny', ...body } as unknown as OpenAI.CompletionCreateParamsNonStreaming);
    const before = await migrations(gateway, 'resumed');
    const got = await streamWithFault(gateway, body, 3, async (w, id) => {
      decodes.delete(id);
      await w.close();
    });
    expect(got.faulted).toBeDefined();
    expect(await migrations(gateway, 'resumed')).toBe(before + 1);
    expect(got.text).toBe(unbroken.choices[0]!.text);
    expect(got.finish).toBe('stop');
    const value = JSON.parse(got.text) as { items: { n: number; ok: boolean }[] };
    expect(value.items).toHaveLength(12);
    expect(value.items.every((r) => Number.isInteger(r.n) && r.n >= 0 && r.n <= 999 && typeof r.ok === 'boolean')).toBe(true);
    await addDecode();
  });
});
