// @pdserve/engine: one model's engine (scheduler, block pool, step loop) behind the EngineClient contract
// of @pdserve/contracts.
export { LLMEngine, ENGINE_DEFAULTS, type EngineOptions } from './engine';
export { gatherPast } from './kv-io';
export { SPECULATIVE_DEFAULTS, type SpeculativeOptions } from './speculative';
// The contract it implements, for its own tests and for callers that hold an LLMEngine.
export { EngineError, type GenerateOutput, type PrefilledKv } from '@pdserve/contracts';
