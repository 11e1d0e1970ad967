export { EngineError, type EngineClient, type EngineErrorCode, type EngineStats, type SpeculationStats, type ExportedKv, type FinishReason, type PrefilledKv, type GenerateOutput, type GenerateRequest, type OffloadSink, type PrefetchedKv } from './client';
export { LLMEngine, ENGINE_DEFAULTS, type EngineOptions } from './engine';
export type { StructuredOutputStats } from './structured';
export { Scheduler, type SchedulerConfig, type SchedulerOutput, type PrefillChunk } from './scheduler';
export { BatchExecutor, ThreadExecutor, type ExecBatch, type ExecResult, type ExecRow } from './executor';
export { gatherPast, scatterNew } from './kv-io';
export { proposeNgram, SpecController, SpecGovernor, SPECULATIVE_DEFAULTS, speculativeProblem, verifyProposal, type Proposal, type SpeculativeOptions } from './speculative';
