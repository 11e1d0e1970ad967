// Who a service may dial or serve: only what the registry lists, matched on address, role and model.
import { describe, expect, it } from 'vitest';
import { connectControlPlane } from './control-plane';
import { InProcessHub } from './hub';
import { RegisteredPeers, hostOf } from './peers';
import { memoryLogger, sampleRecord } from './test-helpers';

describe('RegisteredPeers', () => {
  it('knows members by gRPC address, role and model, data ports and hosts; nothing else', async () => {
    const cp = await connectControlPlane({ cluster: 'peers', hub: new InProcessHub(), logger: memoryLogger() });
    const membership = await cp.registry.watch();
    try {
      await cp.registry.register(sampleRecord('p0', { role: 'prefill', grpcAddress: '10.0.0.1:50051', dataAddress: '10.0.0.1:50052' }));
      await cp.registry.register(sampleRecord('s0', { role: 'kv-store', grpcAddress: '10.0.0.9:50051', model: '*' }));
      const peers = new RegisteredPeers(membership);
      expect((await peers.member('10.0.0.1:50051', ['prefill', 'mixed'], 'tiny-llama'))?.id).toBe('p0');
      expect(await peers.member('10.0.0.1:50051', ['decode'], 'tiny-llama'), 'wrong role').toBeUndefined();
      expect(await peers.member('10.0.0.1:50051', ['prefill'], 'other-model'), 'wrong model').toBeUndefined();
      expect(await peers.member('10.6.6.6:50051', ['prefill'], 'tiny-llama'), 'unknown address').toBeUndefined();
      expect((await peers.member('10.0.0.9:50051', ['kv-store'], 'any-model'))?.id, "a '*' store serves every model").toBe('s0');
      expect(await peers.isDataPort('10.0.0.1:50052')).toBe(true);
      expect(await peers.isDataPort('10.0.0.1:50051'), 'a gRPC port is no data port').toBe(false);
      expect(await peers.isMemberHost('10.0.0.9')).toBe(true);
      expect(await peers.isMemberHost('10.6.6.6')).toBe(false);
      // One that registers after the view was taken is found: a miss re-reads the registry.
      await cp.registry.register(sampleRecord('d0', { grpcAddress: '10.0.0.2:50051' }));
      expect((await peers.member('10.0.0.2:50051', ['decode'], 'tiny-llama'))?.id).toBe('d0');
    } finally {
      membership.close();
      await cp.close();
    }
  });

  it('hostOf takes the host of host:port, IPv6 too', () => {
    expect(hostOf('10.0.0.1:50051')).toBe('10.0.0.1');
    expect(hostOf('[fd00::1]:50051')).toBe('fd00::1');
  });
});
