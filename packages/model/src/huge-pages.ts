// onnxruntime's weights (its prepacked MatMul buffers: ≈ 1.9 GB at the qwen2.5-0.5b preset) come from
// malloc, on 4 KiB pages unless glibc is told to ask for transparent huge pages. A decode step reads all of
// them, so on 4 KiB pages it pays a TLB miss and a page walk every 4 KiB; measured here (2 cores, AMD
// EPYC VM, preset, batch 1, 2,048 tokens) a step took 88–100 ms on 4 KiB pages and 62–75 ms on huge pages,
// and the first step after a pause lost most of its extra cost (docs/benchmarks.md). glibc reads the
// tunable once, at process start: the processes that load a model are started with it (the local
// cluster's children, the test kit's services, `npm start`, the image).
import { readFileSync } from 'node:fs';

/** glibc (≥ 2.35) malloc's tunable: madvise(MADV_HUGEPAGE) on the memory it maps. Ignored by other libcs. */
export const HUGE_PAGES_TUNABLE = 'glibc.malloc.hugetlb=1';

/** Whether `env`'s GLIBC_TUNABLES already says what malloc does about huge pages (ours, or an operator's own choice). */
function setsHugePages(env: NodeJS.ProcessEnv): boolean {
  return /(^|:)glibc\.malloc\.hugetlb=/.test(env.GLIBC_TUNABLES ?? '');
}

/** `env` with HUGE_PAGES_TUNABLE added to its GLIBC_TUNABLES (the others kept), for a process about to be spawned. */
export function withHugePages(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  if (setsHugePages(env)) return env;
  const tunables = env.GLIBC_TUNABLES ?? '';
  return { ...env, GLIBC_TUNABLES: tunables === '' ? HUGE_PAGES_TUNABLE : `${tunables}:${HUGE_PAGES_TUNABLE}` };
}

/** The kernel's transparent huge page mode; undefined where it has none (not Linux, or no THP). */
export function transparentHugePages(): 'always' | 'madvise' | 'never' | undefined {
  try {
    const mode = /\[(always|madvise|never)\]/.exec(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))?.[1];
    return mode as 'always' | 'madvise' | 'never' | undefined;
  } catch {
    return undefined;
  }
}

/**
 * Why this process's model memory is on 4 KiB pages though huge pages would help, or undefined: the
 * kernel gives transparent huge pages on request only ([always] gives them anyway, [never] never) and the
 * process was started without the tunable.
 */
export function hugePagesMissing(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (transparentHugePages() !== 'madvise' || setsHugePages(env)) return undefined;
  return `the model's memory is on 4 KiB pages: start with GLIBC_TUNABLES=${HUGE_PAGES_TUNABLE} for transparent huge pages (decode steps ≈ 25 % faster measured)`;
}
