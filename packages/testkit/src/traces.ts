import { join } from 'node:path';
import { REPO_ROOT } from '@pdserve/model';

/** The shared Mooncake trace: ../shared beside the repository (as on every machine and in CI), or PDSERVE_SHARED_TRACE. */
export const SHARED_TRACE = process.env['PDSERVE_SHARED_TRACE'] ?? join(REPO_ROOT, '..', 'shared', 'traces', 'mooncake_synthetic_trace.jsonl');
