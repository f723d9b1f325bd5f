/**
 * `file-discovery`: endpoints from a YAML or JSON file (upstream's format, see
 * `datastore/discovery/file.ts`), reloaded when the file changes unless `watchFile` is false.
 * Referenced from `dataLayer.discovery.pluginRef`.
 */
import { z } from 'zod';
import type { Logger } from '../../../core/log.js';
import { FileDiscovery } from '../../datastore/discovery/file.js';
import type { DiscoverySink, EndpointDiscovery } from '../../framework/datalayer.js';
import { definePlugin, type TypedName } from '../../framework/plugin.js';

export const TYPE = 'file-discovery';

export const paramsSchema = z
  .object({
    path: z.string().min(1),
    watchFile: z.boolean().default(true),
  })
  .strict();

export type FileDiscoveryParams = z.output<typeof paramsSchema>;

export class FileDiscoveryPlugin implements EndpointDiscovery {
  readonly typedName: TypedName;
  readonly discovery: FileDiscovery;

  constructor(name: string, params: FileDiscoveryParams, logger: Logger) {
    this.typedName = { type: TYPE, name };
    this.discovery = new FileDiscovery({
      path: params.path,
      watch: params.watchFile,
      logger: logger.child({ plugin: name }),
    });
  }

  start(sink: DiscoverySink): Promise<void> {
    return this.discovery.start(sink);
  }

  stop(): void {
    this.discovery.stop();
  }

  close(): void {
    this.discovery.stop();
  }
}

export const definition = definePlugin({
  type: TYPE,
  params: paramsSchema,
  create: (name, params, handle) => new FileDiscoveryPlugin(name, params, handle.logger),
});
