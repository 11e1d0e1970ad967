// What in-process participants share in embedded mode: one lease store and one subject broker. Cluster
// names are part of keys and subjects, so one hub can hold several clusters.
import { InProcessBroker } from './in-process-transport';
import { MemoryLeaseStore } from './lease-store';

export class InProcessHub {
  readonly store = new MemoryLeaseStore();
  readonly broker = new InProcessBroker();
}

/** The hub used when none is given: everything in this process that runs embedded meets here. */
export const processHub = new InProcessHub();
