import { describe, expect, it } from 'vitest';
import { loadWorkerPackage } from './proto';
import { WIRE_FIELDS, WIRE_ONEOFS } from './wire';

interface Descriptor {
  readonly field: readonly { readonly name: string }[];
  readonly oneofDecl: readonly { readonly name: string }[];
}

describe('hand-kept worker wire types', () => {
  it('declare exactly the fields and oneofs of every message in worker.proto', () => {
    const loaded = new Map<string, Descriptor>();
    for (const [name, def] of Object.entries(loadWorkerPackage())) {
      if ('format' in def && def.format === 'Protocol Buffer 3 DescriptorProto') loaded.set(name, def.type as Descriptor);
    }
    expect([...loaded.keys()].sort()).toEqual(Object.keys(WIRE_FIELDS).sort());
    for (const [name, d] of loaded) {
      expect({ name, fields: d.field.map((f) => f.name).sort() }).toEqual({ name, fields: [...WIRE_FIELDS[name]!].sort() });
      expect({ name, oneofs: d.oneofDecl.map((o) => o.name) }).toEqual({
        name,
        oneofs: WIRE_ONEOFS[name] === undefined ? [] : [WIRE_ONEOFS[name]],
      });
    }
  });
});
