/**
 * `single-profile-handler`: runs the one configured profile once; its result is the decision. The
 * loader adds it when a config has a single profile and no handler.
 */
import { z } from 'zod';
import { ConfigError, SchedulingFailedError } from '../../../core/errors.js';
import { definePlugin, type TypedName } from '../../framework/plugin.js';
import type { InferenceRequest } from '../../framework/request.js';
import type {
  ProfileHandler,
  ProfileRunResult,
  SchedulerProfile,
  SchedulingResult,
} from '../../framework/scheduling.js';

export const TYPE = 'single-profile-handler';

export const definition = definePlugin({
  type: TYPE,
  params: z.object({}).strict(),
  create: (name) => new SingleProfileHandler(name),
});

const NONE: readonly SchedulerProfile[] = [];

export class SingleProfileHandler implements ProfileHandler {
  readonly typedName: TypedName;
  private only: SchedulerProfile[] = [];

  constructor(name: string) {
    this.typedName = { type: TYPE, name };
  }

  checkProfiles(profiles: ReadonlyMap<string, SchedulerProfile>): void {
    if (profiles.size !== 1) {
      throw new ConfigError(
        `plugin ${this.typedName.name} (${TYPE}) needs exactly one scheduling profile, found ${profiles.size}`,
        'schedulingProfiles',
      );
    }
    this.only = [...profiles.values()];
  }

  pick(
    _req: InferenceRequest,
    profiles: ReadonlyMap<string, SchedulerProfile>,
    results: ReadonlyMap<string, ProfileRunResult | null>,
  ): readonly SchedulerProfile[] {
    if (results.size > 0) return NONE;
    return this.only.length === 1 ? this.only : [...profiles.values()].slice(0, 1);
  }

  processResults(
    _req: InferenceRequest,
    results: ReadonlyMap<string, ProfileRunResult | null>,
  ): SchedulingResult {
    for (const [name, result] of results) {
      if (result === null) throw new SchedulingFailedError('failed to find available endpoints');
      return { profileResults: results, primaryProfileName: name };
    }
    throw new SchedulingFailedError('no scheduling profile ran');
  }
}
