// xgrammar's WebAssembly build, loaded so that Node can run it, and the few embind classes we call.
//
// Why a loader: @mlc-ai/web-xgrammar 0.1.27 says "type": "module" but ships a UMD bundle that calls
// `require` and reads `__filename`, so `import` fails under Node 20 ("require is not defined in ES module
// scope"). We evaluate the bundle as CommonJS instead, with three edits checked below: the embind module
// is exported (the package's wrappers are async for every call, leak a TokenizerInfo handle per matcher
// and copy masks through extra vectors), its stderr is captured (a failed parse only says "Aborted()",
// the reason goes to printErr), and its one `await import('module')` gets node:module directly (a
// dynamic import from evaluated code has no loader under vitest's module runner).
import { readFileSync } from 'node:fs';
import * as nodeModule from 'node:module';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';

/** An embind object: C++ memory that JavaScript's GC never frees, so every one is deleted by its owner. */
interface Handle {
  delete(): void;
}

export interface XgVectorInt extends Handle {
  size(): number;
}
export type XgVectorString = Handle;
export type XgTokenizerInfo = Handle;
export type XgGrammar = Handle;
export type XgCompiledGrammar = Handle;

export interface XgGrammarCompiler extends Handle {
  CompileGrammar(grammar: XgGrammar): XgCompiledGrammar;
}

export interface XgGrammarMatcher extends Handle {
  AcceptToken(tokenId: number, verbose: boolean): boolean;
  GetNextTokenBitmask(vocabSize: number): XgVectorInt;
  IsTerminated(): boolean;
  Rollback(numTokens: number): void;
}

/** The subset of the embind module that pdserve uses. */
export interface XgBinding {
  vecStringFromJSArray(list: readonly string[]): XgVectorString;
  vecIntFromJSArray(list: readonly number[]): XgVectorInt;
  /** A view into WASM memory: valid until the vector is deleted or memory grows. */
  vecIntToView(v: XgVectorInt): Int32Array;
  TokenizerInfo: new (
    encodedVocab: XgVectorString,
    vocabType: 'RAW' | 'BYTE_FALLBACK' | 'BYTE_LEVEL',
    vocabSize: number,
    stopTokenIds: XgVectorInt | undefined,
    prependSpace: boolean,
  ) => XgTokenizerInfo;
  GrammarCompiler: new (info: XgTokenizerInfo, maxThreads: number, cacheEnabled: boolean) => XgGrammarCompiler;
  Grammar: { FromEBNF: new (ebnf: string, rootRule: string) => XgGrammar };
  GrammarMatcher: new (
    compiled: XgCompiledGrammar,
    overrideStopTokens: XgVectorInt | undefined,
    terminateWithoutStopToken: boolean,
    maxRollbackTokens: number,
  ) => XgGrammarMatcher;
}

/** What the WASM module printed to stderr since the last call of takeMessages. */
const messages: string[] = [];

export function takeMessages(): string[] {
  return messages.splice(0, messages.length);
}

let loading: Promise<XgBinding> | undefined;

/** The xgrammar module, instantiated once per process (the WASM itself is inlined in the bundle). */
export function loadXgrammar(): Promise<XgBinding> {
  loading ??= load();
  return loading;
}

async function load(): Promise<XgBinding> {
  const require = createRequire(import.meta.url);
  const file = require.resolve('@mlc-ai/web-xgrammar');
  let src = readFileSync(file, 'utf8');
  const init = 'binding = await Module();';
  const tail = 'exports.default = index;';
  const dynamicImport = "await import('module')";
  if (!src.includes(init) || !src.includes(tail) || src.split(dynamicImport).length !== 2) {
    throw new Error(`${file}: not the @mlc-ai/web-xgrammar 0.1.27 bundle this loader expects`);
  }
  src = src
    .replace(dynamicImport, 'nodeModule')
    .replace(init, 'binding = await Module(moduleArg);')
    .replace(tail, `${tail}\nexports.__binding = async () => { await asyncInitBinding(); return binding; };`);
  const module = { exports: {} as { __binding: () => Promise<XgBinding> } };
  const moduleArg = { print: (s: string) => messages.push(s), printErr: (s: string) => messages.push(s) };
  const run = new Function('exports', 'require', 'module', '__filename', '__dirname', 'moduleArg', 'nodeModule', src) as (
    ...args: unknown[]
  ) => void;
  run(module.exports, require, module, file, dirname(file), moduleArg, nodeModule);
  return module.exports.__binding();
}
