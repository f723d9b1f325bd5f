/**
 * The inference APIs the sidecar disaggregates, and where each keeps its token limits: the prefill
 * leg must stop after one token, and the field that says so differs per API (llm-d's
 * `pkg/common/request/tokens.go`).
 */
import { REMOVE, type JsonEdit, type JsonObject } from './json-patch.js';

export type ApiType = 'chat' | 'completions' | 'messages' | 'responses' | 'generate';

/** POST paths handled by the P/D flow; everything else is proxied as is. */
export const PD_ROUTES: ReadonlyMap<string, ApiType> = new Map([
  ['/v1/chat/completions', 'chat'],
  ['/v1/completions', 'completions'],
  ['/v1/messages', 'messages'],
  ['/v1/responses', 'responses'],
  ['/inference/v1/generate', 'generate'],
]);

/** The path of a request target, without its query. */
export function pathOf(target: string): string {
  const q = target.indexOf('?');
  return q < 0 ? target : target.slice(0, q);
}

const ONE = '1';
const LIMITS_OBJECT = '{"max_tokens":1,"min_tokens":1}';

/**
 * Edits that cap a request at one generated token. `min_tokens` is forced to 1 too: a client's larger
 * value would make the prefiller reject the request, since vLLM wants min_tokens ≤ max_tokens.
 */
export function oneTokenEdits(body: JsonObject, api: ApiType): [string, JsonEdit][] {
  switch (api) {
    case 'responses': {
      const edits: [string, JsonEdit][] = [['max_output_tokens', ONE]];
      if (body.has('min_tokens')) edits.push(['min_tokens', ONE]);
      return edits;
    }
    case 'generate': {
      // The limits live inside `sampling_params`; one is made when the client sent none.
      const sp = body.object('sampling_params');
      return [
        [
          'sampling_params',
          sp === undefined
            ? LIMITS_OBJECT
            : sp.patch([
                ['max_tokens', ONE],
                ['min_tokens', ONE],
              ]),
        ],
      ];
    }
    default:
      return [
        ['max_tokens', ONE],
        ['max_completion_tokens', ONE],
        ['min_tokens', ONE],
      ];
  }
}

/** `stream:false` and no `stream_options`: vLLM returns `kv_transfer_params` only on a whole response. */
export const NON_STREAMING: readonly [string, JsonEdit][] = [
  ['stream', 'false'],
  ['stream_options', REMOVE],
];

/** The usage field that holds cached prompt tokens, per API (null: the API reports none). */
export function cachedTokensField(api: ApiType): string | null {
  switch (api) {
    case 'responses':
      return 'input_tokens_details';
    case 'messages':
      return null;
    default:
      return 'prompt_tokens_details';
  }
}
