import { describe, expect, it } from 'vitest';
import { loadKvStorePackage } from './proto';
import { WIRE_FIELDS } from './wire';

describe('hand-kept kv-store wire types', () => {
  it('declare exactly the fields of every message in kvstore.proto', () => {
    const loaded = new Map<string, { field: { name: string }[] }>();
    for (const [name, def] of Object.entries(loadKvStorePackage())) {
      if ('format' in def && def.format === 'Protocol Buffer 3 DescriptorProto')
        loaded.set(name, def.type as { field: { name: string }[] });
    }
    expect([...loaded.keys()].sort()).toEqual(Object.keys(WIRE_FIELDS).sort());
    for (const [name, d] of loaded) {
      expect({ name, fields: d.field.map((f) => f.name).sort() }).toEqual({ name, fields: [...WIRE_FIELDS[name]!].sort() });
    }
  });
});
