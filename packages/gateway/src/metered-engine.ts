// Measures what clients see of an engine: TTFT, inter-token latency, tokens and requests in flight.
import type { EngineClient, GenerateOutput, GenerateRequest } from '@pdserve/contracts';
import type { GatewayMetrics } from '@pdserve/metrics';

export class MeteredEngine implements EngineClient {
  /** The `model` label of every series this engine records. */
  private readonly labels: { readonly model: string };

  constructor(
    private readonly inner: EngineClient,
    private readonly m: GatewayMetrics,
  ) {
    this.labels = { model: inner.modelId };
    // The model's series exist from the start, so "nothing yet" reads as 0, not as no data.
    this.m.requestsInFlight.inc(this.labels, 0);
  }

  get modelId(): string {
    return this.inner.modelId;
  }
  get maxModelLen(): number {
    return this.inner.maxModelLen;
  }
  isReady(): boolean {
    return this.inner.isReady();
  }

  async *generate(req: GenerateRequest): AsyncGenerator<GenerateOutput> {
    const t0 = performance.now();
    const labels = this.labels;
    let last = 0;
    let tokens = 0;
    let finished = false;
    this.m.requestsInFlight.inc(labels);
    this.m.promptTokens.inc(labels, req.promptTokenIds.length);
    try {
      for await (const o of this.inner.generate(req)) {
        if (o.tokenIds.length > 0) {
          const now = performance.now();
          if (tokens === 0) this.m.timeToFirstToken.observe(labels, (now - t0) / 1000);
          else this.m.interTokenLatency.observe(labels, (now - last) / 1000);
          last = now;
          tokens += o.tokenIds.length;
          this.m.generationTokens.inc(labels, o.tokenIds.length);
        }
        if (o.finishReason !== undefined) finished = true;
        yield o;
      }
    } finally {
      this.m.requestsInFlight.dec(labels);
      // Lengths of requests that ran to a finish (stop, length or a client's abort), as vLLM counts them.
      if (finished) {
        this.m.requestPromptTokens.observe(labels, req.promptTokenIds.length);
        this.m.requestGenerationTokens.observe(labels, tokens);
      }
    }
  }
}
