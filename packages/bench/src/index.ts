// The load generator (`pdserve bench`): synthetic workloads and trace replay against any OpenAI-compatible
// server, and the cluster simulator that drives the real router.
export { runBench } from './runner';
export { resolveOptions } from './options';
export type { BenchOptions, Endpoint, WorkloadSpec } from './options';
export type { BenchReport } from './report';
export { compareReports, formatReport } from './format';
export { percentile } from './stats';
export { MOONCAKE_TRACE, TraceError, parseTrace, readTrace } from './trace';
// The cluster simulator (drives @pdserve/router itself).
export { simulate, DEFAULT_CACHE_TOKENS } from './sim/simulate';
export type { SimOptions } from './sim/options';
export type { SimReport } from './sim/report';
export { findCapacity } from './sim/capacity';
export type { CapacityOptions, CapacityResult } from './sim/capacity';
export type { CostModel } from './sim/cost-model';
// The cost model's prices, for the gateway's admission predictions.
export { costModelOf, decodeStepSeconds, requestOverheadSeconds } from './sim/cost-model';
export type { EngineLimits } from './sim/engine';
export type { SimWorkloadOptions } from './sim/workload';
export { formatCapacity, formatSimReport } from './sim/format';
export { fitCostModel, parseCostModel } from './sim/calibration';
export type {
  CalibrationFile,
  CalibrationSamples,
  DecodeSample,
  OverheadSample,
  PrefillSample,
} from './sim/calibration';
// HTML reports (`--report FILE.html`): self-contained pages with uPlot charts.
export { benchReportPage, type LabelledBenchReport } from './report-html/bench-page';
export { simReportPage } from './report-html/sim-page';
export { renderReportPage } from './report-html/page';
