import type { JsonObject, JsonValue } from './json';
import type { ResolvedOptions } from './options';
import { renderText } from './prompts';
import type { BenchRequest } from './workloads';

/** The path of the endpoint under the base URL (which may or may not end in /v1). */
export function endpointUrl(base: string, endpoint: ResolvedOptions['endpoint']): string {
  const root = base.replace(/\/+$/, '').replace(/\/v1$/, '');
  return `${root}/v1/${endpoint === 'chat' ? 'chat/completions' : 'completions'}`;
}

/** The streaming request body for one request, in the OpenAI dialect. */
export function requestBody(req: BenchRequest, o: ResolvedOptions): JsonObject {
  const common: Record<string, JsonValue> = {
    model: o.model,
    max_tokens: req.maxTokens,
    temperature: o.temperature,
    stream: true,
    stream_options: { include_usage: true },
  };
  if (o.ignoreEos) common['ignore_eos'] = true;
  if (o.endpoint === 'chat') {
    common['messages'] = req.parts.map((p) => ({ role: p.role, content: renderText(p.tokenIds) }));
  } else if (o.tokenIds) {
    const ids: number[] = [];
    for (const p of req.parts) for (const t of p.tokenIds) ids.push(t);
    common['prompt'] = ids;
  } else {
    common['prompt'] = req.parts.map((p) => renderText(p.tokenIds)).join(' ');
  }
  return { ...common, ...o.extraBody };
}
