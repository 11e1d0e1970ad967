// Tool calling: the request's `tools` and `tool_choice`, and the grammar that makes `required` and a named
// tool choice produce a valid call. How calls are read back out of the generated text is tool-calls.ts.
import type { StructuredOutput } from './deps';

/** One function the model may call, as the request defined it. */
export interface ToolSpec {
  readonly name: string;
  readonly description?: string;
  /** A JSON Schema of the arguments object; `{type: "object"}` when the request gave none. */
  readonly parameters: Readonly<Record<string, unknown>>;
  /** The tool exactly as sent (`{type: "function", function: {...}}`), for the chat template. */
  readonly raw: unknown;
}

/**
 * none: no tools offered (the template renders none, output is text); auto: the model decides, its
 * tool-call syntax is parsed; required: at least one call, constrained; named: one call of that tool, constrained.
 */
export type ToolChoice =
  | { readonly kind: 'none' }
  | { readonly kind: 'auto' }
  | { readonly kind: 'required' }
  | { readonly kind: 'named'; readonly name: string };

/**
 * What `required` and named tool choices generate. Named: the arguments object alone (its name is known).
 * Required: a JSON array of one or more `{"name": ..., "arguments": {...}}`, each name one of the tools
 * and its arguments valid against that tool's parameters (the shape vLLM constrains to, with OpenAI's
 * "arguments" for the key). Undefined: no constraint (none, auto).
 */
export function toolCallConstraint(tools: readonly ToolSpec[], choice: ToolChoice, parallel = true): StructuredOutput | undefined {
  if (choice.kind === 'named') {
    const tool = tools.find((t) => t.name === choice.name);
    return tool === undefined ? undefined : { kind: 'json_schema', schema: tool.parameters, strict: true };
  }
  if (choice.kind !== 'required') return undefined;
  const call = (t: ToolSpec): Record<string, unknown> => ({
    type: 'object',
    properties: { name: { const: t.name }, arguments: t.parameters },
    required: ['name', 'arguments'],
    additionalProperties: false,
  });
  const items = tools.length === 1 ? call(tools[0]!) : { anyOf: tools.map(call) };
  return { kind: 'json_schema', schema: { type: 'array', minItems: 1, ...(parallel ? {} : { maxItems: 1 }), items }, strict: true };
}
