// Reading a registered worker of a multi-process test cluster over its own gRPC port.
import type { ControlPlane } from '@pdserve/control-plane';
import { WorkerClient } from '@pdserve/worker';

/** The Stats of the worker registered as `id` (throws when it is not registered). */
export async function workerStats(cp: ControlPlane, id: string) {
  const rec = (await cp.registry.list()).find((r) => r.id === id);
  if (!rec) throw new Error(`${id} not registered`);
  const c = new WorkerClient(rec.grpcAddress);
  try {
    return await c.stats();
  } finally {
    c.close();
  }
}
