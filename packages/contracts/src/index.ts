// @pdserve/contracts: the types packages and services share, so that a caller never loads an
// implementation to get a type. Only types, and the few small values that come with them (EngineError,
// isBlockHash).
export {
  EngineError,
  enginePriority,
  SERVICE_TIERS,
  type ServiceTier,
  type EngineClient,
  type EngineErrorCode,
  type EngineStats,
  type ExportedKv,
  type FinishReason,
  type GenerateOutput,
  type GenerateRequest,
  type OffloadSink,
  type PrefetchedKv,
  type PrefilledKv,
  type PromptLogprob,
  type SpeculationStats,
} from './engine';
export {
  isBlockHash,
  isWorkerRole,
  WORKER_ROLES,
  type BlockHash,
  type KvEvent,
  type KvEventBatch,
  type LoadReport,
  type SnapshotEntry,
  type Tier,
  type WorkerRole,
} from './cluster';
export type { LogFields, LogFn, LogLevel, Logger } from './logger';
