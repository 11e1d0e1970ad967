/** An OpenAI chat message; content parts are flattened to text by the chat layer. */
export interface ChatMessage {
  readonly role: string;
  readonly content: string;
  readonly name?: string;
  /** An assistant turn's tool calls, rendered by templates that know them (`message.tool_calls`). */
  readonly toolCalls?: readonly ChatToolCall[];
  /** A tool turn: the call it answers (`message.tool_call_id`). */
  readonly toolCallId?: string;
}

/** A function call in a chat message; `arguments` as the template gets it (parsed JSON when it parses). */
export interface ChatToolCall {
  readonly id: string;
  readonly name: string;
  readonly arguments: unknown;
}

/** How a chat template is rendered (transformers' apply_chat_template arguments). */
export interface ChatRenderOptions {
  /** End with the assistant's turn header, for the model to write the reply; default false. */
  readonly addGenerationPrompt?: boolean;
  /**
   * Leave the final (assistant) message open, so the model continues it: the rendering is cut right after
   * that message's content; default false. Excludes addGenerationPrompt.
   */
  readonly continueFinalMessage?: boolean;
  /** Tool definitions in OpenAI's shape (`{type: "function", function: {name, description, parameters}}`). */
  readonly tools?: readonly unknown[];
  /** Extra template variables (vLLM's chat_template_kwargs, e.g. enable_thinking). */
  readonly kwargs?: Readonly<Record<string, unknown>>;
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
  applyChatTemplate(messages: readonly ChatMessage[], opts?: ChatRenderOptions): string;
}
