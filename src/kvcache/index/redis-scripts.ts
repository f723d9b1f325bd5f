/**
 * The Lua scripts the Redis index runs server-side, and how they are called: by SHA (EVALSHA), loading
 * the source again when Redis answers NOSCRIPT (its script cache is empty after a restart or a
 * `SCRIPT FLUSH`). The two prune scripts are upstream's, so the Go replicas' and ours interleave
 * safely; the score script is ours: the whole LongestPrefix walk in one round trip.
 */
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { FrameCommand } from './redis-frame.js';

/** Deletes a request-key hash left with no field (upstream `pruneRequestKeyScript`). */
export const PRUNE_REQUEST_KEY = `
local hashLen = redis.call('HLEN', KEYS[1])
if hashLen == 0 then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`;

/**
 * Deletes an engine-key ZSET (KEYS[1]) only when every request-key hash it maps to (KEYS[2..]) is
 * empty, checked atomically so a concurrent Add cannot slip in between (upstream
 * `pruneEngineKeyScript`).
 */
export const PRUNE_ENGINE_KEY = `
for i = 2, #KEYS do
  if redis.call('HLEN', KEYS[i]) > 0 then
    return 0
  end
end
redis.call('DEL', KEYS[1])
return 1
`;

/**
 * A Lua pattern matching a hash field in the exact form Go's encoder writes a PodEntry (and
 * `encodePodField` does), capturing pod, tier, speculative, has-group, group index and the rest
 * (`}`, or Go's optional `,"retrievalSpan":n}`). Strings with escapes do not match: their fields
 * are left to the client's full decoder.
 */
const GO_FIELD_PATTERN = `'^{"PodIdentifier":"([^"\\\\]*)","DeviceTier":"([^"\\\\]*)","Speculative":(%a+),"HasGroup":(%a+),"GroupIdx":(%-?%d+)(.*)$'`;

/**
 * The LongestPrefix walk over the request keys in KEYS, in prompt order.
 * ARGV = nWeights, (tier, weight) × nWeights, nPods, pod × nPods (no pods: every pod counts).
 *
 * Walks the keys with the set of pods that hold every key so far, each pod's best tier per key (a
 * tier not listed weighs 1), and stops at the first key no surviving pod holds (a key that is not a
 * hash, e.g. another application's, holds none: upstream's Lookup does the same).
 *
 * What makes it cheap: Lua in Redis pays per command and per value crossing into Lua, so the script
 * does one HKEYS per key and, in the common case that a key's fields are those of the key before
 * (the same pods hold the whole prefix), only compares them (interned strings: pointer compares)
 * and lengthens the current run. The answer is the runs, not sums: per run its length and, per pod
 * holding it, the index of its best tier's weight (0: weight 1). The client adds the weights block by
 * block in order, exactly as the reference scorer does, so the doubles are identical and no float
 * crosses the wire.
 *
 * Fields are recognised in the exact form Go's encoder writes (what both implementations write),
 * with pod and tier in plain printable ASCII. Any other field (escapes, foreign writers, garbage)
 * makes the script answer {1}: the client then scores from a lookup with its full, tolerant decoder,
 * so one decoder decides what a foreign field means.
 *
 * Returns {0, nRuns, (length, nPods, (pod, weightIndex) × nPods) × nRuns}, pods in field order, or {1}.
 */
export const SCORE = `
local nw = tonumber(ARGV[1])
local tierIndex = {}
local weight = {[0] = 1}
local a = 2
for k = 1, nw do
  tierIndex[ARGV[a]] = k
  weight[k] = tonumber(ARGV[a + 1])
  a = a + 2
end
local np = tonumber(ARGV[a])
a = a + 1
local filter = nil
if np > 0 then
  filter = {}
  for _ = 1, np do
    filter[ARGV[a]] = true
    a = a + 1
  end
end

-- field -> pod (false: filtered out); field -> weight index
local fpod = {}
local fidx = {}
local function parse(f)
  local pod, tier, spec, hasg, gidx, rest = string.match(f,
    ${GO_FIELD_PATTERN})
  if pod == nil then return false end
  if string.find(pod, '[^ -~]') or string.find(tier, '[^ -~]') then return false end
  if (spec ~= 'true' and spec ~= 'false') or (hasg ~= 'true' and hasg ~= 'false') then return false end
  if #gidx > 15 or string.find(gidx, '^%-?0%d') then return false end
  if rest ~= '}' and not string.find(rest, '^,"retrievalSpan":%d+}$') then return false end
  if filter ~= nil and not filter[pod] then
    fpod[f] = false
  else
    fpod[f] = pod
    fidx[f] = tierIndex[tier] or 0
  end
  return true
end

local out = {0, 0}
local runs = 0
local runLen = 2 -- where the current run's length sits in out
local active = nil
local prev = nil
for i = 1, #KEYS do
  local fields = redis.pcall('HKEYS', KEYS[i])
  if type(fields) ~= 'table' or fields.err then break end
  local same = prev ~= nil and #fields == #prev
  if same then
    for j = 1, #fields do
      if fields[j] ~= prev[j] then
        same = false
        break
      end
    end
  end
  if same then
    out[runLen] = out[runLen] + 1
  else
    local best = {}
    local bestIdx = {}
    local order = {}
    for j = 1, #fields do
      local f = fields[j]
      local pod = fpod[f]
      if pod == nil then
        if not parse(f) then return {1} end
        pod = fpod[f]
      end
      if pod and (active == nil or active[pod]) then
        local k = fidx[f]
        local b = best[pod]
        if b == nil then
          order[#order + 1] = pod
          best[pod] = weight[k]
          bestIdx[pod] = k
        elseif weight[k] > b then
          best[pod] = weight[k]
          bestIdx[pod] = k
        end
      end
    end
    if #order == 0 then break end
    runs = runs + 1
    out[#out + 1] = 1
    runLen = #out
    out[#out + 1] = #order
    active = {}
    for _, pod in ipairs(order) do
      active[pod] = true
      out[#out + 1] = pod
      out[#out + 1] = bestIdx[pod]
    end
    prev = fields
  end
end
out[2] = runs
return out
`;

/**
 * One step of a keyspace walk for `countKeysByPod`: SCAN from the cursor ARGV[1] (COUNT ARGV[2]),
 * then HKEYS of every key named as a request key (a decimal uint64), counting per pod the keys
 * holding one of its confirmed (not speculative) entries, a pod once per key. Fields are recognised
 * in Go's exact form, as in the score script; a key with any other field is answered raw, for the
 * client's tolerant decoder to count. So a step answers a few dozen bytes per pod, and keeps Redis
 * busy about a millisecond, not for the whole walk.
 *
 * Returns {nextCursor, nPods, (pod, keys) × nPods, {field…} per key with a foreign field}.
 */
export const COUNT_KEYS = `
local scan = redis.call('SCAN', ARGV[1], 'COUNT', ARGV[2])
-- field -> pod (false: a speculative entry, not counted); absent: not parsed yet
local fpod = {}
local function parse(f)
  local pod, tier, spec, hasg, gidx, rest = string.match(f,
    ${GO_FIELD_PATTERN})
  if pod == nil then return nil end
  if string.find(pod, '[^ -~]') or string.find(tier, '[^ -~]') then return nil end
  if (spec ~= 'true' and spec ~= 'false') or (hasg ~= 'true' and hasg ~= 'false') then return nil end
  if #gidx > 15 or string.find(gidx, '^%-?0%d') then return nil end
  if rest ~= '}' and not string.find(rest, '^,"retrievalSpan":%d+}$') then return nil end
  if spec == 'true' then return false end
  return pod
end

local counts = {}
local pods = {}
local foreign = {}
local seen = {}
for ki, k in ipairs(scan[2]) do
  local b = string.byte(k, 1)
  local n = #k
  if b ~= nil and b >= 48 and b <= 57 and (k == '0' or string.find(k, '^[1-9]%d*$'))
      and (n < 20 or (n == 20 and k <= '18446744073709551615')) then
    local fields = redis.pcall('HKEYS', k)
    if type(fields) == 'table' and not fields.err and #fields > 0 then
      local ok = true
      for j = 1, #fields do
        local f = fields[j]
        if fpod[f] == nil then
          local p = parse(f)
          if p == nil then
            ok = false
            break
          end
          fpod[f] = p
        end
      end
      if ok then
        for j = 1, #fields do
          local p = fpod[fields[j]]
          if p and seen[p] ~= ki then
            seen[p] = ki
            local c = counts[p]
            if c == nil then
              pods[#pods + 1] = p
              counts[p] = 1
            else
              counts[p] = c + 1
            end
          end
        end
      else
        foreign[#foreign + 1] = fields
      end
    end
  end
end
local out = {scan[1], #pods}
for _, p in ipairs(pods) do
  out[#out + 1] = p
  out[#out + 1] = counts[p]
end
for _, f in ipairs(foreign) do out[#out + 1] = f end
return out
`;

export class LuaScript {
  readonly sha: string;

  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  /** EVALSHA with `keys` as KEYS and `args` as ARGV; see `send`. */
  run(client: Redis, keys: readonly string[], args: readonly string[] = []): Promise<unknown> {
    return this.send(client, () => client.evalsha(this.sha, keys.length, ...keys, ...args));
  }

  /** EVALSHA given as a prebuilt RESP frame (its first arguments must be EVALSHA and this SHA). */
  runFrame(client: Redis, frame: Buffer): Promise<unknown> {
    return this.send(client, () => {
      const cmd = new FrameCommand('evalsha', frame);
      void client.sendCommand(cmd);
      return cmd.promise as Promise<unknown>;
    });
  }

  /**
   * On NOSCRIPT (Redis restarted, or `SCRIPT FLUSH`), SCRIPT LOAD and once more. Loading on demand
   * rather than on connect keeps start-up free of round trips and covers a flush on a live
   * connection too.
   */
  private async send(client: Redis, attempt: () => Promise<unknown>): Promise<unknown> {
    try {
      return await attempt();
    } catch (err) {
      if (!isNoScript(err)) throw err;
      await client.script('LOAD', this.source);
      return attempt();
    }
  }
}

export function isNoScript(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('NOSCRIPT');
}
