// Measures what clients see of an engine: TTFT, inter-token latency, tokens and requests in flight.
import type { EngineClient, EngineStats, GenerateOutput, GenerateRequest } from '@pdserve/engine';
import type { GatewayMetrics } from '@pdserve/metrics';

export class MeteredEngine implements EngineClient {
  constructor(
    private readonly inner: EngineClient,
    private readonly m: GatewayMetrics,
  ) {}

  get modelId(): string {
    return this.inner.modelId;
  }
  get maxModelLen(): number {
    return this.inner.maxModelLen;
  }
  isReady(): boolean {
    return this.inner.isReady();
  }
  stats(): EngineStats {
    return this.inner.stats();
  }

  async *generate(req: GenerateRequest): AsyncGenerator<GenerateOutput> {
    const t0 = performance.now();
    let last = 0;
    let tokens = 0;
    this.m.requestsInFlight.inc();
    this.m.promptTokens.inc(req.promptTokenIds.length);
    try {
      for await (const o of this.inner.generate(req)) {
        if (o.tokenIds.length > 0) {
          const now = performance.now();
          if (tokens === 0) this.m.timeToFirstToken.observe((now - t0) / 1000);
          else this.m.interTokenLatency.observe((now - last) / 1000);
          last = now;
          tokens += o.tokenIds.length;
          this.m.generationTokens.inc(o.tokenIds.length);
        }
        yield o;
      }
    } finally {
      this.m.requestsInFlight.dec();
    }
  }
}
