// The simulator's fidelity on the slice test/sim-fidelity.test.ts runs (test/lib/fidelity.ts): prefix hit
// rate and mean TTFT, real cluster against simulator with a cost model calibrated just before. The test
// checks the hit rates; the TTFT error (within 30% on an idle machine) is measured here:
//
//   node --import tsx scripts/bench-fidelity.ts
import { fidelityErrors, runFidelity } from '../test/lib/fidelity';
import { machine } from './lib/stats';

const TTFT_ERROR_BOUND = 0.3;
const { ttftError, line } = fidelityErrors(await runFidelity());
process.stdout.write(`${line}\n${machine()}\nmean TTFT ${ttftError <= TTFT_ERROR_BOUND ? 'within' : 'NOT within'} ${TTFT_ERROR_BOUND * 100}% of the real run's.\n`);
process.exit(0);
