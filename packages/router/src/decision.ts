import type { PrefillPlacement } from './disaggregation';
import type { CandidateScore, PolicyName } from './policy';
import type { WorkerRole } from './types';

/** Leading prompt blocks a worker can reuse, split by where they come from. */
export interface PrefixCredit {
  /** device + host + disk + store. */
  readonly blocks: number;
  readonly device: number;
  readonly host: number;
  readonly disk: number;
  /** Blocks past the worker's own prefix that the kv-store supplies. */
  readonly store: number;
}

/** The router's answer for one request, with the inputs that produced it. */
export interface RoutingDecision {
  readonly requestId: string;
  readonly policy: PolicyName;
  readonly decodeWorker: string;
  readonly decodeRole: WorkerRole;
  readonly prefill: PrefillPlacement;
  readonly requestedBlocks: number;
  /** Reusable prefix on the decode worker. */
  readonly decodePrefix: PrefixCredit;
  /** Reusable prefix on the worker that prefills (the decode worker itself when prefill is local). */
  readonly prefillPrefix: PrefixCredit;
  /** Prompt tokens the prefilling worker has to compute. */
  readonly uncachedTokens: number;
  /** The policy's one-line reason. */
  readonly reason: string;
  /** Best decode candidates as the policy scored them, best first (empty for round-robin and random). */
  readonly candidates: readonly CandidateScore[];
  /** Best prefill candidates when the prefill pool was scored, best first. */
  readonly prefillCandidates: readonly CandidateScore[];
}

/** A compact, human-readable account of a decision, for debug logs. */
export function explainDecision(d: RoutingDecision): string {
  const placement = d.prefill.prefill === 'local' ? `local (${d.prefill.reason})` : `remote on ${d.prefill.worker}`;
  const p = d.prefillPrefix;
  const lines = [
    `request ${d.requestId} → decode ${d.decodeWorker} [${d.decodeRole}] by ${d.policy}: ${d.reason}`,
    `prefill ${placement}; reusable prefix ${p.blocks}/${d.requestedBlocks} blocks ` +
      `(device ${p.device}, host ${p.host}, disk ${p.disk}, store ${p.store}); ${d.uncachedTokens} tokens to compute`,
  ];
  for (const c of d.candidates) lines.push(`  decode ${c.worker}: ${formatTerms(c)}`);
  for (const c of d.prefillCandidates) lines.push(`  prefill ${c.worker}: ${formatTerms(c)}`);
  return lines.join('\n');
}

function formatTerms(c: CandidateScore): string {
  return Object.entries(c.terms)
    .map(([k, v]) => `${k}=${Number.isInteger(v) ? v : v.toFixed(2)}`)
    .join(' ');
}
