// The worker's admin port answers from the first moment (liveness, scrapes) but /ready only once the worker
// can take work: engine loaded and registered. A worker that cannot start leaves nothing listening.
import { afterAll, describe, expect, it } from 'vitest';
import { connectControlPlane, InProcessHub, silentLogger, type ControlPlane } from '@pdserve/control-plane';
import { ensureTinyModel } from '@pdserve/model';
import { freePort } from '@pdserve/testkit';
import { startWorkerService } from './service';

async function status(url: string): Promise<number> {
  try {
    return (await fetch(url)).status;
  } catch {
    return 0;
  }
}

/** A control plane whose registry holds every registration until `release()`. */
function gatedRegistry(cp: ControlPlane): { controlPlane: ControlPlane; release(): void } {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const registry = new Proxy(cp.registry, {
    get(target, key) {
      const v = Reflect.get(target, key, target) as unknown;
      if (key === 'register') return async (...args: Parameters<typeof target.register>) => (await gate, target.register(...args));
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { controlPlane: { cluster: cp.cluster, mode: cp.mode, registry, events: cp.events, close: () => cp.close() }, release };
}

const planes: ControlPlane[] = [];
afterAll(async () => {
  await Promise.all(planes.map((cp) => cp.close()));
});

describe('worker service admin port', () => {
  it('serves /health and /metrics while starting, and /ready only once registered', async () => {
    const cp = await connectControlPlane({ cluster: 'svc-ready', hub: new InProcessHub(), logger: silentLogger });
    planes.push(cp);
    const { controlPlane, release } = gatedRegistry(cp);
    const adminPort = await freePort();
    const admin = `http://127.0.0.1:${adminPort}`;
    const starting = startWorkerService({
      role: 'decode',
      instanceId: 'd-ready',
      engine: { modelDir: await ensureTinyModel(), modelId: 'tiny', kvCacheBytes: 8 * 2 ** 20 },
      controlPlane,
      logger: silentLogger,
      adminPort,
    });
    const until = Date.now() + 20_000;
    while ((await status(`${admin}/health`)) !== 200) {
      if (Date.now() > until) throw new Error('admin port never answered');
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(await status(`${admin}/ready`)).toBe(503);
    expect(await (await fetch(`${admin}/metrics`)).text()).toContain('pdserve_process_cpu_seconds_total');
    release();
    const w = await starting;
    expect(await status(`${admin}/ready`)).toBe(200);
    expect(await (await fetch(`${admin}/metrics`)).text()).toContain('pdserve_kv_blocks_capacity');
    await w.drain(1_000);
    expect(await status(`${admin}/ready`)).toBe(0);
  });

  it('closes its admin port when the model fails to load', async () => {
    const cp = await connectControlPlane({ cluster: 'svc-fail', hub: new InProcessHub(), logger: silentLogger });
    planes.push(cp);
    const adminPort = await freePort();
    await expect(
      startWorkerService({
        role: 'prefill',
        engine: { modelDir: '/nonexistent/model' },
        controlPlane: cp,
        logger: silentLogger,
        adminPort,
      }),
    ).rejects.toThrow();
    expect(await status(`http://127.0.0.1:${adminPort}/health`)).toBe(0);
  });
});
