/**
 * The in-tree plugin catalog: every plugin type llmd ships, registered by its upstream name. This is
 * the one list to extend; the framework never names a plugin.
 */
import { PluginRegistry } from '../framework/registry.js';
import * as coreMetricsExtractor from './datalayer/core-metrics-extractor.js';
import * as fileDiscovery from './datalayer/file-discovery.js';
import * as metricsDataSource from './datalayer/metrics-data-source.js';
import * as byLabel from './filter/by-label.js';
import * as decodeFilter from './filter/decode.js';
import * as labelSelector from './filter/label-selector.js';
import * as prefillFilter from './filter/prefill.js';
import * as prefixCacheAffinity from './filter/prefix-cache-affinity.js';
import * as utilizationFilter from './filter/utilization.js';
import * as maxScore from './picker/max-score.js';
import * as randomPicker from './picker/random.js';
import * as weightedRandom from './picker/weighted-random.js';
import * as approxPrefixCache from './producer/approx-prefix-cache.js';
import * as inflightLoad from './producer/inflight-load.js';
import * as precisePrefixCache from './producer/precise-prefix-cache.js';
import * as tokenProducer from './producer/token.js';
import * as alwaysDisagg from './profile/decider/always-disagg.js';
import * as prefixBased from './profile/decider/prefix-based.js';
import * as disagg from './profile/disagg.js';
import * as disaggHeaders from './profile/disagg-headers.js';
import * as pd from './profile/pd.js';
import * as single from './profile/single.js';
import * as utilizationDetector from './saturation/utilization-detector.js';
import * as activeRequest from './scorer/active-request.js';
import * as kvCacheUtilization from './scorer/kv-cache-utilization.js';
import * as loadAware from './scorer/load-aware.js';
import * as loraAffinity from './scorer/lora-affinity.js';
import * as noHitLru from './scorer/no-hit-lru.js';
import * as prefixCache from './scorer/prefix-cache.js';
import * as precisePrefixCacheScorer from './scorer/precise-prefix-cache.js';
import * as queue from './scorer/queue.js';
import * as runningRequestsSize from './scorer/running-requests-size.js';
import * as sessionAffinity from './scorer/session-affinity.js';
import * as tokenLoad from './scorer/token-load.js';

const IN_TREE = [
  // profile handlers and P/D deciders
  single,
  disagg,
  pd,
  disaggHeaders,
  prefixBased,
  alwaysDisagg,
  // filters
  decodeFilter,
  prefillFilter,
  labelSelector,
  byLabel,
  utilizationFilter,
  prefixCacheAffinity,
  // scorers
  queue,
  kvCacheUtilization,
  runningRequestsSize,
  loadAware,
  activeRequest,
  tokenLoad,
  prefixCache,
  precisePrefixCacheScorer,
  noHitLru,
  sessionAffinity,
  loraAffinity,
  // pickers
  maxScore,
  randomPicker,
  weightedRandom,
  // data producers
  approxPrefixCache,
  precisePrefixCache,
  inflightLoad,
  tokenProducer,
  // data layer
  metricsDataSource,
  coreMetricsExtractor,
  fileDiscovery,
  // saturation
  utilizationDetector,
];

/** A fresh registry with every in-tree plugin; merge out-of-tree ones into it. */
export function inTreeRegistry(): PluginRegistry {
  const r = new PluginRegistry();
  for (const m of IN_TREE) r.register(m.definition);
  return r;
}
