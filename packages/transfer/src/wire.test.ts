import { describe, expect, it } from 'vitest';
import { loadTransferPackage } from './proto';
import { WIRE_FIELDS, WIRE_ONEOFS } from './wire';

interface Descriptor {
  readonly field: readonly { readonly name: string }[];
  readonly oneofDecl: readonly { readonly name: string }[];
}

function messages(): Map<string, Descriptor> {
  const out = new Map<string, Descriptor>();
  for (const [name, def] of Object.entries(loadTransferPackage())) {
    if ('format' in def && def.format === 'Protocol Buffer 3 DescriptorProto') out.set(name, def.type as Descriptor);
  }
  return out;
}

describe('hand-kept wire types', () => {
  it('declare exactly the fields of every message in transfer.proto', () => {
    const loaded = messages();
    expect([...loaded.keys()].sort()).toEqual(Object.keys(WIRE_FIELDS).sort());
    for (const [name, d] of loaded) {
      expect({ name, fields: d.field.map((f) => f.name).sort() }).toEqual({ name, fields: [...(WIRE_FIELDS[name] ?? [])].sort() });
      expect({ name, oneofs: d.oneofDecl.map((o) => o.name) }).toEqual({
        name,
        oneofs: WIRE_ONEOFS[name] === undefined ? [] : [WIRE_ONEOFS[name]],
      });
    }
  });
});
