/** An OpenAI chat message; content parts are flattened to text by the chat layer. */
export interface ChatMessage {
  readonly role: string;
  readonly content: string;
  readonly name?: string;
}

export interface EncodeOptions {
  /** Add BOS etc. as the tokenizer's post-processor does; default true. Chat prompts pass false. */
  readonly addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Default true. */
  readonly skipSpecialTokens?: boolean;
}

/** The face of a model's tokenizer that the rest of pdserve uses. */
export interface TextTokenizer {
  readonly vocabSize: number;
  readonly bosTokenId: number | undefined;
  /** Every id that ends generation: from generation_config.json and tokenizer_config.json. */
  readonly eosTokenIds: readonly number[];
  readonly hasChatTemplate: boolean;
  encode(text: string, opts?: EncodeOptions): number[];
  decode(ids: readonly number[], opts?: DecodeOptions): string;
  /** Renders the chat template to prompt text (which already holds any BOS the template adds). */
  applyChatTemplate(messages: readonly ChatMessage[], opts?: { readonly addGenerationPrompt?: boolean }): string;
}
