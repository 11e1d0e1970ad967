import { parentPort, workerData } from 'node:worker_threads';
import { type ExecBatch, type ExecutorInit, type StagedBlocks, ThreadModels } from './executor';

const port = parentPort!;
const init = workerData as ExecutorInit;

try {
  const models = await ThreadModels.create(init);
  // Batches run strictly in arrival order: the engine relies on it for block reuse.
  let chain = Promise.resolve();
  port.on('message', (msg: { id: number; batch?: ExecBatch; releaseDraft?: boolean; stage?: StagedBlocks }) => {
    chain = chain.then(async () => {
      try {
        if (msg.stage) {
          models.stage(msg.stage); // no reply: a batch that follows finds it staged, or copies from blocks
          return;
        }
        if (msg.releaseDraft) {
          await models.releaseDraft();
          port.postMessage({ id: msg.id, ok: true, result: undefined });
          return;
        }
        const result = await models.run(msg.batch!);
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
