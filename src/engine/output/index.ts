/** The simulated model's output: what it says (plans) and how that text is streamed. */
export { CORPUS_SENTENCES } from './corpus.js';
export {
  IncrementalDetokenizer,
  PROMPT_CONTEXT_TOKENS,
  type DetokenizerOptions,
} from './incremental-detokenizer.js';
export {
  createOutputGenerator,
  sequenceSeed,
  type OutputGenerator,
  type OutputGeneratorOptions,
  type OutputMode,
  type OutputPlanRequest,
} from './output-generator.js';
export { OutputTextStream, type OutputTextOptions } from './output-text-stream.js';
export { sampleResponseLength, type LengthRequest } from './response-length.js';
export { StopChecker, type StopCheckerOptions, type StopResult } from './stop-checker.js';
