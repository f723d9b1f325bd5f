/**
 * A pod of the pool → its endpoints: one per target port it serves (see core/kubernetes/readiness.ts),
 * id `namespace/<pod>-rank-<i>`, at `podIP:port`, with the pod's labels. The rank stays the port's
 * index in the pool, so a rank keeps its id as others come and go. The pod's
 * `llm-d.ai/kv-events-endpoint` annotation reaches the precise prefix-cache producer as the endpoint
 * label of the same name (`KV_EVENTS_ENDPOINT_LABEL`), which `--endpoint` and the endpoints file set.
 */
import { KV_EVENTS_ENDPOINT_ANNOTATION, servingPorts } from '../../../core/kubernetes/readiness.js';
import type { Pod } from '../../../core/kubernetes/resources.js';
import type { EndpointSpec } from '../../framework/datalayer.js';

export {
  ACTIVE_PORTS_ANNOTATION,
  KV_EVENTS_ENDPOINT_ANNOTATION,
  LEGACY_ACTIVE_PORTS_ANNOTATION,
  activePorts,
  isPodReady,
} from '../../../core/kubernetes/readiness.js';

export function podEndpoints(pod: Pod, targetPorts: readonly number[]): EndpointSpec[] {
  const kvEvents = pod.annotations[KV_EVENTS_ENDPOINT_ANNOTATION];
  const labels =
    kvEvents === undefined ? pod.labels : { ...pod.labels, [KV_EVENTS_ENDPOINT_ANNOTATION]: kvEvents };
  return servingPorts(pod, targetPorts).map(({ rank, port }) => ({
    name: pod.name,
    namespace: pod.namespace,
    address: pod.podIP,
    port,
    rank,
    labels,
  }));
}
