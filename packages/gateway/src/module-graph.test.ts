// The gateway never runs a model: loading it must not load onnxruntime-node (a native addon of tens of
// megabytes, and the reason a gateway image would need the runtime). It reaches what it shares with the
// workers through contracts and client subpaths. Checked in a fresh process per module graph.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

function loads(specifier: string): { native: string[]; commonJs: string[] } {
  const fixture = fileURLToPath(new URL('./module-graph.fixture.ts', import.meta.url));
  const out = execFileSync(process.execPath, ['--import', 'tsx', fixture, specifier], { encoding: 'utf8', timeout: 60_000 });
  return JSON.parse(out) as { native: string[]; commonJs: string[] };
}

const onnxruntime = (paths: readonly string[]): string[] => paths.filter((p) => /onnxruntime/.test(p));

describe('the gateway\'s module graph', () => {
  it('never loads onnxruntime-node', () => {
    const g = loads('@pdserve/gateway');
    expect(g.commonJs.length).toBeGreaterThan(0); // it did load things (grpc-js, ioredis, ...)
    expect(onnxruntime(g.native)).toEqual([]);
    expect(onnxruntime(g.commonJs)).toEqual([]);
  }, 90_000);

  it('reaches the kv-store through its client subpath, without the store\'s Redis directory (ioredis)', () => {
    const c = loads('@pdserve/kv-store/client');
    expect(c.commonJs.filter((p) => /ioredis/.test(p))).toEqual([]);
    expect(loads('@pdserve/kv-store').commonJs.filter((p) => /ioredis/.test(p)).length).toBeGreaterThan(0);
  }, 90_000);

  it('while the model package does (the check can fail)', () => {
    const m = loads('@pdserve/model');
    expect(onnxruntime([...m.native, ...m.commonJs]).length).toBeGreaterThan(0);
  }, 90_000);
});
