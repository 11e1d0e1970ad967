/**
 * unsupported_schema: a valid JSON Schema using a keyword or form this engine cannot enforce (the message
 * names it and where); invalid_schema: not a JSON Schema at all. The API answers both with a 400.
 * internal: xgrammar refused a grammar we generated, which is our bug.
 */
export type GrammarErrorCode = 'unsupported_schema' | 'invalid_schema' | 'internal';

export class GrammarError extends Error {
  constructor(
    readonly code: GrammarErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'GrammarError';
  }
}
