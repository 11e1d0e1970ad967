/**
 * JSON schemas that structured-output tests generate against (grammar random walks, the engine with
 * the tiny model's random weights): every output must parse and validate. Counted strings and arrays
 * stay short, so that random weights finish well inside a test's max_tokens.
 */
export const JSON_SCHEMA_CASES: readonly { readonly name: string; readonly schema: Record<string, unknown> }[] = [
  {
    name: 'flat object with required fields and enum',
    schema: {
      type: 'object',
      properties: {
        id: { type: 'integer', minimum: 1, maximum: 9999 },
        status: { enum: ['open', 'closed', 'pending'] },
        ok: { type: 'boolean' },
      },
      required: ['id', 'status', 'ok'],
      additionalProperties: false,
    },
  },
  {
    name: 'nested objects',
    schema: {
      type: 'object',
      properties: {
        user: {
          type: 'object',
          properties: {
            name: { type: 'string', maxLength: 8 },
            address: {
              type: 'object',
              properties: { zip: { type: 'string', pattern: '^[0-9]{5}$' }, country: { const: 'NL' } },
              required: ['zip', 'country'],
            },
          },
          required: ['name', 'address'],
        },
        active: { type: 'boolean' },
      },
      required: ['user', 'active'],
    },
  },
  {
    name: 'arrays with minItems and maxItems',
    schema: {
      type: 'object',
      properties: {
        tags: { type: 'array', items: { enum: ['a', 'b', 'c'] }, minItems: 1, maxItems: 3 },
        scores: { type: 'array', items: { type: 'integer', minimum: 0, maximum: 100 }, minItems: 2, maxItems: 4 },
      },
      required: ['tags', 'scores'],
    },
  },
  {
    name: 'string patterns',
    schema: {
      type: 'object',
      properties: {
        code: { type: 'string', pattern: '^[A-Z]{3}-\\d{2,4}$' },
        hex: { type: 'string', pattern: '^#[0-9a-fA-F]{6}$' },
        word: { type: 'string', pattern: '^(yes|no|maybe)$' },
      },
      required: ['code', 'hex', 'word'],
    },
  },
  {
    name: 'numbers with bounds',
    schema: {
      type: 'object',
      properties: {
        p: { type: 'number', minimum: 0, maximum: 1 },
        t: { type: 'number', exclusiveMinimum: -40.5, exclusiveMaximum: 60.25 },
        n: { type: 'integer', minimum: -50, maximum: 50 },
        big: { type: 'integer', exclusiveMinimum: 1000 },
        any: { type: 'number' },
      },
      required: ['p', 't', 'n', 'big', 'any'],
    },
  },
  {
    name: 'optional properties',
    schema: {
      type: 'object',
      properties: { a: { type: 'integer', maximum: 9 }, b: { type: 'boolean' }, c: { type: 'null' } },
      required: ['b'],
    },
  },
  {
    name: 'anyOf and nullable types',
    schema: {
      type: 'object',
      properties: {
        v: {
          anyOf: [
            { type: 'integer', minimum: 0, maximum: 9 },
            { type: 'string', maxLength: 3 },
          ],
        },
        w: { type: ['boolean', 'null'] },
      },
      required: ['v', 'w'],
    },
  },
  {
    name: 'references and a tuple',
    schema: {
      $defs: {
        point: {
          type: 'object',
          properties: { x: { type: 'integer', minimum: 0, maximum: 9 }, y: { type: 'integer', minimum: 0, maximum: 9 } },
          required: ['x', 'y'],
        },
      },
      type: 'object',
      properties: {
        from: { $ref: '#/$defs/point' },
        to: { $ref: '#/$defs/point' },
        pair: { type: 'array', prefixItems: [{ type: 'string', maxLength: 2 }, { type: 'boolean' }], items: false },
      },
      required: ['from', 'to', 'pair'],
    },
  },
  {
    name: 'top-level array of enums',
    schema: { type: 'array', items: { enum: [1, 2, 'three', null, true] }, minItems: 1, maxItems: 5 },
  },
];
