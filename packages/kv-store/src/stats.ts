// Counters behind stats(); the service turns them into pdserve_kvstore_* metrics.
export class TierCounters {
  hits = 0;
  misses = 0;
  evictions = 0;
  readBytes = 0;
  writeBytes = 0;
  corruptDropped = 0;
}

export class StoreCounters {
  readonly memory = new TierCounters();
  readonly disk = new TierCounters();
  committedPuts = 0;
  revokedPuts = 0;
  reclaimedPuts = 0;
  demotions = 0;
  promotions = 0;
}
