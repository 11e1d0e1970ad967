import type { TextTokenizer } from '@pdserve/tokenizer';

/** The text a server streams for `output` after `prompt`: the decoded whole minus the decoded prompt. */
export function completion(tokenizer: TextTokenizer, prompt: readonly number[], output: readonly number[]): string {
  return tokenizer.decode([...prompt, ...output]).slice(tokenizer.decode(prompt).length);
}
