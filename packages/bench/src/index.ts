// The load generator (`pdserve bench`): synthetic workloads and trace replay against any OpenAI-compatible
// server, and the cluster simulator that drives the real router.
export { runBench } from './runner';
export type { BenchProgress } from './runner';
export { DEFAULT_REQUESTS, resolveOptions } from './options';
export type { BenchOptions, Endpoint, ResolvedOptions, WorkloadSpec } from './options';
export { buildReport } from './report';
export type { BenchReport } from './report';
export type { RequestRecord } from './client';
export { compareReports, formatReport } from './format';
export { percentile, summarize } from './stats';
export type { Summary } from './stats';
export { SseParser, readSse } from './sse';
export type { SseEvent } from './sse';
export { poissonArrivals } from './arrivals';
export { WORKLOAD_DEFAULTS, listSource, syntheticSource } from './workloads';
export type { BenchRequest, PromptPart, PromptRole, RequestSource, SyntheticWorkload, WorkloadShape } from './workloads';
export { DEFAULT_TOKEN_RANGE } from './prompts';
export type { TokenRange } from './prompts';
export { MOONCAKE_TRACE, TraceError, parseTrace, readTrace } from './trace';
export type { Trace, TraceRecord } from './trace';
export { TRACE_BLOCK_SIZE, replayInputLength, traceSource, traceToRequests } from './trace-replay';
export type { TraceReplayOptions } from './trace-replay';
// The cluster simulator (drives @pdserve/router itself).
export { simulate, DEFAULT_CACHE_TOKENS } from './sim/simulate';
export type { SimOptions } from './sim/options';
export type { SimReport, SimRequestRecord } from './sim/report';
export { findCapacity } from './sim/capacity';
export type { CapacityOptions, CapacityProbe, CapacityResult } from './sim/capacity';
export { DEFAULT_COST_MODEL, chunkTokenPairs, costModelOf, decodeStepSeconds, requestOverheadSeconds, transferSeconds } from './sim/cost-model';
export type { CostModel } from './sim/cost-model';
export { DEFAULT_ENGINE_LIMITS } from './sim/engine';
export type { EngineLimits } from './sim/engine';
export { routerHash, simWorkload } from './sim/workload';
export type { SimRequest, SimWorkloadOptions } from './sim/workload';
export { formatCapacity, formatSimReport } from './sim/format';
export { fitCostModel, nnls, parseCostModel, predictAloneTtft, prefillWork } from './sim/calibration';
export type { Calibration, CalibrationFile, CalibrationSamples, DecodeSample, FitQuality, OverheadSample, PrefillSample, PrefillWork } from './sim/calibration';
// HTML reports (`--report FILE.html`): self-contained pages with uPlot charts.
export { benchReportPage, type LabelledBenchReport } from './report-html/bench-page';
export { simReportPage, type NamedSimRun } from './report-html/sim-page';
export { renderReportPage } from './report-html/page';
export type { ChartSeries, ChartSpec, ReportPage, TableSpec } from './report-html/spec';
