export { GrammarCompiler, CompiledGrammar, GrammarMatcher, grammarFor, maskAllows, type GrammarCompilerOptions } from './compiler';
export { GrammarError, type GrammarErrorCode } from './errors';
export { vocabularyFromDir, vocabularyFromTokenizerJson, type Vocabulary, type VocabType } from './vocabulary';
