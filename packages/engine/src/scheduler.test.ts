// Preemption order by priority band: when blocks run out, the least urgent running sequence goes first
// (flex before default before priority), the newest among equals.
import { describe, expect, it } from 'vitest';
import { BlockPool } from '@pdserve/kv-cache';
import { Sampler, samplingParams } from '@pdserve/model';
import { enginePriority, type ServiceTier } from '@pdserve/contracts';
import { Scheduler } from './scheduler';
import { Sequence } from './sequence';

const BS = 4;
const params = samplingParams({ temperature: 0, maxTokens: 64 });

function seq(id: number, tier: ServiceTier): Sequence {
  return new Sequence(id, `r${id}`, [1, 2, 3, 4, 5, 6, 7], params, new Sampler(params, 100), enginePriority(0, tier), id, 'm', BS);
}

/** Runs `s` as the engine would: every scheduled token computed and (at the end of a prompt) one appended. */
function step(s: Scheduler): ReturnType<Scheduler['schedule']> {
  const out = s.schedule();
  for (const c of out.prefills) c.seq.numComputed = c.end;
  for (const d of out.decodes) d.numComputed += 1;
  for (const x of [...out.decodes, ...out.prefills.filter((c) => c.end === c.seq.tokens.length).map((c) => c.seq)]) x.appendToken(9);
  return out;
}

describe('scheduler preemption by priority band', () => {
  it('preempts flex first, then default, never priority while others run', () => {
    // 3 sequences of 7 prompt tokens: 2 blocks each; 7 blocks in all, so growth soon needs a victim.
    const pool = new BlockPool({ numLayers: 1, numKvHeads: 1, headDim: 4, blockSize: BS }, 7);
    const s = new Scheduler(pool, { maxNumSeqs: 8, maxNumBatchedTokens: 64, prefillChunkTokens: 0, watermarkBlocks: 0 });
    const flex = seq(1, 'flex');
    const prio = seq(2, 'priority');
    const dflt = seq(3, 'default');
    // Flex arrives first and runs alone; then priority and default join, admitted by band.
    s.add(flex);
    expect(step(s).admitted.map((a) => a.seq)).toEqual([flex]);
    s.add(dflt);
    s.add(prio);
    expect(step(s).admitted.map((a) => a.seq)).toEqual([prio, dflt]);
    // The newest running sequence is default: the old rule would preempt it; flex goes first instead.
    expect(s.running.at(-1)).toBe(dflt);
    const victims: Sequence[] = [];
    for (let i = 0; i < 6 && victims.length < 2; i++) victims.push(...step(s).preempted);
    expect(victims[0]).toBe(flex);
    expect(prio.status).toBe('running');
  });
});
