/**
 * What `metrics-data-source` hands its extractors: the scraped page, parsed once per poll, restricted
 * to the metric names the extractors declared.
 */
import type { Extractor, MutableEndpoint } from '../../framework/datalayer.js';
import type { MetricsPage } from '../../datastore/prometheus-text.js';

export const METRICS_KIND = 'metrics';

export interface MetricsExtractor extends Extractor {
  readonly sourceKind: typeof METRICS_KIND;
  /** Sample names this extractor reads; the page is parsed for these only. Fixed after creation. */
  readonly metricNames: ReadonlySet<string>;
  /**
   * Writes what it found onto the endpoint's metrics. Returns null, or what was missing or malformed
   * (counted as an extract error). A throw is caught and counted the same way.
   */
  extract(page: MetricsPage, endpoint: MutableEndpoint): string | null;
}

export function isMetricsExtractor(e: Extractor): e is MetricsExtractor {
  const m = e as Partial<MetricsExtractor>;
  return e.sourceKind === METRICS_KIND && typeof m.extract === 'function' && m.metricNames instanceof Set;
}
