import { parentPort, workerData } from 'node:worker_threads';
import { ModelRunner } from '@pdserve/model';
import { BatchExecutor, type ExecBatch, type ExecutorInit } from './executor';

const port = parentPort!;
const init = workerData as ExecutorInit;

try {
  const runner = await ModelRunner.create(init.spec, init.runner);
  const exec = new BatchExecutor(runner, init.layout, init.pool);
  // Batches run strictly in arrival order: the engine relies on it for block reuse.
  let chain = Promise.resolve();
  port.on('message', (msg: { id: number; batch: ExecBatch }) => {
    chain = chain.then(async () => {
      try {
        const result = await exec.run(msg.batch);
        port.postMessage({ id: msg.id, ok: true, result }, [result.logits.buffer as ArrayBuffer]);
      } catch (err) {
        port.postMessage({ id: msg.id, ok: false, error: (err as Error).message });
      }
    });
  });
  port.postMessage({ ready: true });
} catch (err) {
  port.postMessage({ ready: false, error: (err as Error).message });
}
