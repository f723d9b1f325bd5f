/**
 * Server-sent events framing for the OpenAI streaming responses: `data: <json>\n\n`, ended by
 * `data: [DONE]\n\n`.
 */

/** No `connection` header: Node's server decides keep-alive from the request, as HTTP/1.1 wants. */
export const SSE_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
};

export const SSE_DONE = 'data: [DONE]\n\n';

export function sseData(json: string): string {
  return 'data: ' + json + '\n\n';
}
