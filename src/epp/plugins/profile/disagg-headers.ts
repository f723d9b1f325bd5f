/**
 * `disagg-headers-handler` (deprecated; alias `prefill-header-handler`): the PreRequest plugin that
 * set `x-prefiller-host-port` in earlier llm-d releases, before the P/D profile handlers did it
 * themselves. Kept so those configs load; it sets the same header from the named prefill profile, so
 * running it beside a handler that also sets it changes nothing.
 */
import { z } from 'zod';
import { definePlugin, type TypedName } from '../../framework/plugin.js';
import type { PreRequest } from '../../framework/requestcontrol.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { SchedulingResult } from '../../framework/scheduling.js';
import { PREFILLER_HEADER } from './disagg.js';

export const TYPE = 'disagg-headers-handler';

const Params = z.object({ prefillProfile: z.string().min(1).default('prefill') }).strict();

export const definition = definePlugin({
  type: TYPE,
  aliases: ['prefill-header-handler'],
  deprecated: 'P/D profile handlers set x-prefiller-host-port themselves',
  params: Params,
  create: (name, p) => new DisaggHeadersHandler(name, p.prefillProfile),
});

export class DisaggHeadersHandler implements PreRequest {
  readonly typedName: TypedName;

  constructor(
    name: string,
    private readonly prefillProfile: string,
  ) {
    this.typedName = { type: TYPE, name };
  }

  preRequest(req: InferenceRequest, result: SchedulingResult): void {
    const prefill = result.profileResults.get(this.prefillProfile);
    if (prefill && prefill.targetEndpoints.length > 0) {
      req.headers[PREFILLER_HEADER] = prefill.targetEndpoints[0]!.meta.hostPort;
    }
  }
}
