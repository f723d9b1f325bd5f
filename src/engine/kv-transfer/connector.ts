/**
 * vLLM's NixlConnector, as `llmd serve` plays it for prefill/decode disaggregation:
 *  - on a prefiller, a request with `kv_transfer_params.do_remote_decode` keeps its blocks when it ends
 *    and its response names them (`remote_block_ids`, `remote_engine_id`, `remote_request_id`,
 *    `remote_host`, `remote_port`, `tp_size`); the side-channel server lets a decoder read them;
 *  - on a decoder, a request with `do_remote_prefill` first pulls the blocks it does not already hold
 *    (local prefix-cache hits are reused; the pull is aligned to the tail of the remote list, as vLLM
 *    does), verifies them, tells the prefiller to free them, and then decodes — its TTFT pays the
 *    transfer instead of a prefill.
 * The bytes moved are real (a payload per block, scaled by `--sim-kv-transfer-scale`); the simulated
 * time of moving the full-size KV over the configured link (`--sim-kv-transfer-gbps`) is added too.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Logger } from '../../core/log.js';
import type { EngineCore } from '../core/engine-core.js';
import { KvTransferClient, TransferError, type PullResult } from './client.js';
import { MIN_BLOCK_BYTES, blockSeeds } from './payload.js';
import { PROTOCOL_VERSION } from './protocol.js';
import { KvTransferServer } from './server.js';

export type KvLoadFailurePolicy = 'fail' | 'recompute';

export interface NixlSettings {
  readonly engineId: string;
  /** Address advertised to decoders (`VLLM_NIXL_SIDE_CHANNEL_HOST`). */
  readonly sideChannelHost: string;
  /** `VLLM_NIXL_SIDE_CHANNEL_PORT`; 0 picks a free port (advertised as bound). */
  readonly sideChannelPort: number;
  /** `VLLM_NIXL_ABORT_REQUEST_TIMEOUT`, seconds. */
  readonly abortTimeoutS: number;
  readonly failurePolicy: KvLoadFailurePolicy;
  /** Fraction of the real KV bytes each transferred block carries. */
  readonly payloadScale: number;
  /** Simulated link bandwidth, bytes per second, for the full-size KV. */
  readonly linkBytesPerSecond: number;
  readonly transferTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  /** Simulation: every block this prefiller sends is corrupted. */
  readonly corruptPayloads: boolean;
}

export interface TransferObserver {
  transferred(blocks: number, bytes: number, seconds: number): void;
  transferFailed(): void;
}

/** Where a decoder finds the blocks a prefiller holds for it. */
export interface RemoteBlocks {
  readonly blockIds: readonly number[];
  readonly engineId: string;
  readonly requestId: string;
  readonly host: string;
  readonly port: number;
}

export type TransferRole =
  | { readonly kind: 'none' }
  | { readonly kind: 'prefill' }
  | { readonly kind: 'decode'; readonly remote: RemoteBlocks }
  | { readonly kind: 'invalid'; readonly reason: string };

export interface PullOutcome {
  readonly localHitBlocks: number;
  readonly pulled: PullResult;
  /** Seconds still to wait so that the request pays the simulated full-size transfer. */
  readonly remainingSimulatedS: number;
}

export class NixlConnector {
  private readonly server: KvTransferServer;
  private readonly client: KvTransferClient;
  readonly blockBytes: number;
  /** Bytes of one block at full size, for the simulated link time. */
  private readonly fullBlockBytes: number;
  private port: number;
  private expiry: NodeJS.Timeout | null = null;

  constructor(
    private readonly core: EngineCore,
    private readonly model: string,
    private readonly blockSize: number,
    kvBytesPerToken: number,
    private readonly tpSize: number,
    readonly settings: NixlSettings,
    private readonly log: Logger,
    private readonly observer: TransferObserver,
  ) {
    this.fullBlockBytes = kvBytesPerToken * blockSize;
    this.blockBytes = Math.max(MIN_BLOCK_BYTES, Math.round(this.fullBlockBytes * settings.payloadScale));
    const compatibilityHash = createHash('sha256')
      .update(
        JSON.stringify({
          protocol: PROTOCOL_VERSION,
          model,
          blockSize,
          blockBytes: this.blockBytes,
          kvBytesPerToken,
        }),
      )
      .digest('hex');
    this.port = settings.sideChannelPort;
    this.server = new KvTransferServer({
      host: bindAddress(settings.sideChannelHost),
      port: settings.sideChannelPort,
      engineId: settings.engineId,
      compatibilityHash,
      model,
      blockSize,
      blockBytes: this.blockBytes,
      tpSize,
      engine: core,
      logger: log,
      corruptPayloads: settings.corruptPayloads,
    });
    this.client = new KvTransferClient({
      compatibilityHash,
      blockSize,
      blockBytes: this.blockBytes,
      handshakeTimeoutMs: settings.handshakeTimeoutMs,
    });
  }

  async start(): Promise<number> {
    this.port = await this.server.listen();
    // Held blocks must expire even when no engine step runs.
    this.expiry = setInterval(() => this.core.releaseExpired(performance.now() / 1000), 1000);
    this.expiry.unref();
    return this.port;
  }

  async close(): Promise<void> {
    if (this.expiry !== null) clearInterval(this.expiry);
    this.client.close();
    await this.server.close();
  }

  /** What a request's `kv_transfer_params` ask of this engine. */
  classify(params: Record<string, unknown> | null | undefined): TransferRole {
    if (params === null || params === undefined) return { kind: 'none' };
    if (params.do_remote_decode === true) return { kind: 'prefill' };
    if (params.do_remote_prefill !== true) return { kind: 'none' };
    const { remote_block_ids: ids, remote_engine_id: engineId, remote_request_id: requestId } = params;
    const { remote_host: host, remote_port: port } = params;
    if (!Array.isArray(ids) || !ids.every((b) => Number.isInteger(b) && (b as number) >= 0)) {
      return { kind: 'invalid', reason: 'remote_block_ids is not a list of block ids' };
    }
    if (typeof engineId !== 'string' || typeof requestId !== 'string' || typeof host !== 'string') {
      return { kind: 'invalid', reason: 'remote_engine_id, remote_request_id and remote_host are required' };
    }
    if (!Number.isInteger(port) || (port as number) < 1 || (port as number) > 65535) {
      return { kind: 'invalid', reason: 'remote_port is not a port' };
    }
    if (ids.length === 0) return { kind: 'invalid', reason: 'remote_block_ids is empty' };
    return {
      kind: 'decode',
      remote: { blockIds: ids as number[], engineId, requestId, host, port: port as number },
    };
  }

  /** The `kv_transfer_params` of a prefill response whose sequence holds `blockIds`. */
  responseParams(engineRequestId: string, blockIds: readonly number[]): Record<string, unknown> {
    return {
      do_remote_prefill: true,
      do_remote_decode: false,
      remote_block_ids: blockIds,
      remote_engine_id: this.settings.engineId,
      remote_request_id: engineRequestId,
      remote_host: this.settings.sideChannelHost,
      remote_port: this.port,
      tp_size: this.tpSize,
    };
  }

  /**
   * Pulls the prompt's blocks that this engine lacks from the prefiller; always tells the prefiller to
   * let go of them afterwards, success or not. Rejects with `TransferError`.
   */
  async pull(
    remote: RemoteBlocks,
    promptTokenIds: readonly number[],
    opts: { cacheSalt?: string | undefined; signal?: AbortSignal },
  ): Promise<PullOutcome> {
    const total = Math.ceil(promptTokenIds.length / this.blockSize);
    if (remote.blockIds.length !== total) {
      throw new TransferError(
        'remote',
        `the prefiller holds ${remote.blockIds.length} blocks for a prompt of ${total} blocks`,
      );
    }
    const local = this.core.localPrefixHitBlocks(promptTokenIds, { cacheSalt: opts.cacheSalt });
    const seeds = blockSeeds(this.model, promptTokenIds, this.blockSize).slice(local);
    const ids = remote.blockIds.slice(local);
    const t0 = performance.now();
    try {
      const pulled =
        ids.length === 0
          ? { blocks: 0, bytes: 0, seconds: 0 }
          : await this.client.pull({
              host: remote.host,
              port: remote.port,
              engineId: remote.engineId,
              requestId: remote.requestId,
              blockIds: ids,
              seeds,
              timeoutMs: this.settings.transferTimeoutMs,
              signal: opts.signal,
            });
      this.observer.transferred(pulled.blocks, pulled.bytes, pulled.seconds);
      const simulated = (ids.length * this.fullBlockBytes) / this.settings.linkBytesPerSecond;
      const elapsed = (performance.now() - t0) / 1000;
      return { localHitBlocks: local, pulled, remainingSimulatedS: Math.max(0, simulated - elapsed) };
    } catch (err) {
      if (!(err instanceof TransferError) || err.kind !== 'aborted') this.observer.transferFailed();
      throw err instanceof TransferError ? err : new TransferError('connection', (err as Error).message);
    } finally {
      this.client.notify(remote.host, remote.port, remote.engineId, remote.requestId);
    }
  }
}

/** `localhost` advertises a name but binds the loopback address; anything else binds as given. */
function bindAddress(host: string): string {
  return host === 'localhost' ? '127.0.0.1' : host;
}

export function newEngineId(): string {
  return randomUUID();
}
