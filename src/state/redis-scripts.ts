// The Lua scripts of the Redis store: every state change that must be atomic is one script, one round
// trip. Each mirrors the reference semantics in memory-store.ts line for line; the contract suite
// (test/state/store*.contract.test.ts) holds both to them. Numbers are epoch ms, as the replicas' clocks
// give them (replicas must keep their clocks in sync, as for cooldown deadlines).
import type { Redis } from 'ioredis';
import type { Refusal } from './store.js';
import { WINDOW_MS } from '../keys/windows.js';

/** How long an upstream's usage counters outlive their last update. */
export const USAGE_TTL_MS = 30 * 24 * 3_600_000;
/** How long an upstream's round-robin ticket outlives its last take (a new one starts anywhere). */
export const TICKET_TTL_MS = 24 * 3_600_000;

// Keys (P = the configured prefix, any characters: no key is ever found by a pattern). Every key has a TTL.
//   P f:<fact id>                 a fact: "expiry|message", PX at its deadline
//   P facts                       sorted set: fact key -> expiry, how load() finds facts; trimmed of expired
//                                 ones on every publish; PX as long as its longest fact
//   P L:<upstream>:<fp>           hand-set windows of a key: rs rc (rpm start, count), ts tc (tpm); PX one window
//   P S:<upstream>:<fp>:<model>   sent counters n nt, and the upstream's buckets r* / t* (l limit, r remaining,
//                                 x reset at, p period, b base); PX past the buckets' reset
//   P slots:<replica>             in-flight slots of one replica, field "<upstream>|<fp>"; PX replica timeout
//   P replicas                    sorted set: replica -> last heartbeat; PX 10 replica timeouts
//   P rr:<upstream>               round-robin ticket; PX TICKET_TTL_MS, refreshed by every take
//   P usage:<upstream>            usage counters, field "<fp>:<counter>"; PX USAGE_TTL_MS, refreshed by every count
// Ledger keys are named in the scripts, not passed as KEYS: keypool supports a standalone Redis (or
// Sentinel), not Redis Cluster.

export type Arg = string | number;

/** A client with the scripts below registered (`defineScripts`). */
export type ScriptedRedis = Redis & {
  keypoolExtend(...args: Arg[]): Promise<number>;
  keypoolTake(...args: Arg[]): Promise<[0, Refusal, number] | [1, ...number[]]>;
  keypoolFlush(...args: Arg[]): Promise<number>;
  keypoolHeartbeat(...args: Arg[]): Promise<number>;
  keypoolResetSlots(...args: Arg[]): Promise<number>;
};

/** Registers every script on `r` (ioredis sends EVALSHA, and the script itself once per connection). */
export function defineScripts(r: Redis): ScriptedRedis {
  r.defineCommand('keypoolExtend', { numberOfKeys: 3, lua: EXTEND_AND_PUBLISH });
  r.defineCommand('keypoolTake', { numberOfKeys: 0, lua: TAKE });
  r.defineCommand('keypoolFlush', { numberOfKeys: 0, lua: FLUSH });
  r.defineCommand('keypoolHeartbeat', { numberOfKeys: 2, lua: HEARTBEAT });
  r.defineCommand('keypoolResetSlots', { numberOfKeys: 1, lua: RESET_SLOTS });
  return r as ScriptedRedis;
}

/**
 * KEYS[1] the fact, KEYS[2] the channel, KEYS[3] the fact index; ARGV[1] expiry (epoch ms), ARGV[2] TTL
 * ms, ARGV[3] the message, ARGV[4] now. Stores `expiry|message` unless a fact that lasts at least as long
 * is already there, indexes it (dropping expired entries), then publishes.
 */
export const EXTEND_AND_PUBLISH = `
local held = redis.call('GET', KEYS[1])
if held then
  local expiry = tonumber(string.match(held, '^(%d+)|'))
  if expiry and expiry >= tonumber(ARGV[1]) then return 0 end
end
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[3], 'PX', ttl)
redis.call('ZADD', KEYS[3], ARGV[1], KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[4])
if ttl > redis.call('PTTL', KEYS[3]) then redis.call('PEXPIRE', KEYS[3], ttl) end
redis.call('PUBLISH', KEYS[2], ARGV[3])
return 1
`;

/**
 * Shared head of the ledger scripts. Key names are built here from the prefix, so a call carries few
 * arguments (each one costs the client CPU). ARGV: 1 prefix, 2 replica id, 3 now, 4 replica timeout ms,
 * then what this replica has pending, so releases, usage counts and reports ride along with the next
 * take instead of costing round trips of their own:
 *   nR, then nR x "upstream|fp|n|maxConcurrent"                       slots to free
 *   nU, then nU x (upstream, "fp:counter", n)                        usage counts to add
 *   nP, then nP x (upstream, fp, model, "sent,tokens,l,r,x,p,l,r,x,p") rate-limit reports: requests
 *      bucket then tokens bucket (limit, remaining, reset at, period; empty when absent)
 * Leaves `i` at the first argument after them.
 */
const ledgerHead = (windowMs: number): string => `
local P, rid, now, timeout = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local W = ${windowMs}
local cutoff = now - timeout
local replicas, mine, channel = P .. 'replicas', P .. 'slots:' .. rid, P .. 'events'

local function split(text, sep)
  local out = {}
  for part in string.gmatch(text .. sep, '(.-)' .. sep) do out[#out + 1] = part end
  return out
end

-- Slots on a key held by live replicas; this one always counts.
local function inflight(field)
  local n = tonumber(redis.call('HGET', mine, field)) or 0
  for _, other in ipairs(redis.call('ZRANGEBYSCORE', replicas, cutoff, '+inf')) do
    if other ~= rid then n = n + (tonumber(redis.call('HGET', P .. 'slots:' .. other, field)) or 0) end
  end
  return n
end

-- A bucket is taken unless the one held came from a later request (a higher mark).
local function put(key, p, base, limit, remaining, resetAt, period)
  if limit == '' or limit == nil then return end
  local h = redis.call('HMGET', key, p .. 'b', p .. 'p')
  local heldBase = tonumber(h[1])
  if heldBase and tonumber(base) < heldBase then return end
  local keep = math.max(tonumber(period), tonumber(h[2]) or 0)
  redis.call('HSET', key, p .. 'l', limit, p .. 'r', remaining, p .. 'x', resetAt, p .. 'p', keep, p .. 'b', base)
  -- A reset already past still leaves the bucket a window to roll over in.
  local ttl = math.max(tonumber(resetAt) - now, 0) + keep + W
  if ttl > redis.call('PTTL', key) then redis.call('PEXPIRE', key, math.floor(ttl)) end
end

local i = 5
for _ = 1, tonumber(ARGV[i]) do
  i = i + 1
  local r = split(ARGV[i], '|')
  local up, fp, n, maxc = r[1], r[2], tonumber(r[3]), tonumber(r[4])
  local field = up .. '|' .. fp
  local held = tonumber(redis.call('HGET', mine, field)) or 0
  -- None held: the slot was already reclaimed (or taken while Redis was away); nothing to free.
  local free = math.min(held, n)
  if free > 0 then
    if free == held then redis.call('HDEL', mine, field) else redis.call('HINCRBY', mine, field, -free) end
    if maxc and inflight(field) + free >= maxc then
      redis.call('PUBLISH', channel, '{"origin":"' .. rid .. '","freed":{"upstream":"' .. up .. '","fingerprint":"' .. fp .. '"}}')
    end
  end
end
i = i + 1
for _ = 1, tonumber(ARGV[i]) do
  local usage = P .. 'usage:' .. ARGV[i + 1]
  redis.call('HINCRBY', usage, ARGV[i + 2], ARGV[i + 3])
  redis.call('PEXPIRE', usage, ${USAGE_TTL_MS})
  i = i + 3
end
i = i + 1
for _ = 1, tonumber(ARGV[i]) do
  local key = P .. 'S:' .. ARGV[i + 1] .. ':' .. ARGV[i + 2] .. ':' .. ARGV[i + 3]
  local v = split(ARGV[i + 4], ',')
  put(key, 'r', v[1], v[3], v[4], v[5], v[6])
  put(key, 't', v[2], v[7], v[8], v[9], v[10])
  i = i + 4
end
i = i + 1
`;

/** Applies what is pending (the ledger head) when no take comes to carry it. */
export const FLUSH = `${ledgerHead(WINDOW_MS)}
return 1
`;

/**
 * The ledger head, then one take. ARGV from i: upstream, fp, model, tokens, rpm, tpm, maxConcurrent
 * ('' = none), '1' when the key's slots are tracked (it has maxConcurrent, or the strategy compares
 * in-flight counts): then a slot is taken and the key's slots over all replicas are counted.
 * Returns {0, why, until} (until -1 = a free slot), or {1, sent, sentTokens, inflight (-1 = not
 * counted), ticket, then the requests and the tokens bucket as limit (-1 = none), left after this
 * request, reset at, period}.
 */
export const TAKE = `${ledgerHead(WINDOW_MS)}
local up, fp, model = ARGV[i], ARGV[i + 1], ARGV[i + 2]
local tokens = tonumber(ARGV[i + 3])
local rpm, tpm, maxc = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5]), tonumber(ARGV[i + 6])
local slots = ARGV[i + 7] == '1' or maxc ~= nil
local L, S, field = P .. 'L:' .. up .. ':' .. fp, P .. 'S:' .. up .. ':' .. fp .. ':' .. model, up .. '|' .. fp

local rs, rc, ts, tc = 0, 0, 0, 0
if rpm or tpm then
  local l = redis.call('HMGET', L, 'rs', 'rc', 'ts', 'tc')
  rs, rc, ts, tc = tonumber(l[1]) or 0, tonumber(l[2]) or 0, tonumber(l[3]) or 0, tonumber(l[4]) or 0
end
local s = redis.call('HMGET', S, 'n', 'nt', 'rl', 'rr', 'rx', 'rp', 'rb', 'tl', 'tr', 'tx', 'tp', 'tb')
local n, nt = tonumber(s[1]) or 0, tonumber(s[2]) or 0
local rl, rr, rx, rp, rb = tonumber(s[3]), tonumber(s[4]), tonumber(s[5]), tonumber(s[6]), tonumber(s[7])
local tl, tr, tx, tp, tb = tonumber(s[8]), tonumber(s[9]), tonumber(s[10]), tonumber(s[11]), tonumber(s[12])

local untilAt, why = 0, ''
if rpm and now < rs + W and rc >= rpm then untilAt, why = rs + W, 'rpm' end
if tpm and now < ts + W and tc > 0 and tc + tokens > tpm and ts + W > untilAt then untilAt, why = ts + W, 'tpm' end
if rl then
  local left = rl
  if now < rx then left = rr - (n - rb) end
  if left <= 0 and rx > untilAt then untilAt, why = rx, 'requests' end
end
if tl then
  local left = tl
  if now < tx then left = tr - (nt - tb) end
  if left < math.min(tokens, tl) and tx > untilAt then untilAt, why = tx, 'tokens' end
end
if untilAt > now then return {0, why, untilAt} end

local held = -1
if slots then
  held = inflight(field)
  if maxc and held >= maxc then return {0, 'slots', -1} end
end

if rpm or tpm then
  -- Both windows start together (at the first take after the last one ended), so one TTL covers them.
  if now >= rs + W then
    redis.call('HSET', L, 'rs', now, 'rc', 1, 'ts', now, 'tc', tokens)
    redis.call('PEXPIRE', L, W)
  else
    redis.call('HSET', L, 'rc', rc + 1, 'tc', tc + tokens)
  end
end
local ttl = 0
if rl and now >= rx then
  rx, rr, rb = now + math.max(1, rp), rl, n
  redis.call('HSET', S, 'rr', rl, 'rb', n, 'rx', rx)
  ttl = math.max(ttl, rx - now + rp + W)
end
if tl and now >= tx then
  tx, tr, tb = now + math.max(1, tp), tl, nt
  redis.call('HSET', S, 'tr', tl, 'tb', nt, 'tx', tx)
  ttl = math.max(ttl, tx - now + tp + W)
end
if n == 0 then ttl = math.max(ttl, 2 * W) end
n, nt = n + 1, nt + tokens
redis.call('HSET', S, 'n', n, 'nt', nt)
if ttl > 0 and ttl > redis.call('PTTL', S) then redis.call('PEXPIRE', S, math.floor(ttl)) end
if slots then
  if redis.call('HINCRBY', mine, field, 1) == 1 then redis.call('PEXPIRE', mine, timeout) end
  held = held + 1
end
local tickets = P .. 'rr:' .. up
local ticket = redis.call('INCR', tickets)
redis.call('PEXPIRE', tickets, ${TICKET_TTL_MS})
local out = {1, n, nt, held, ticket, -1, 0, 0, 0, -1, 0, 0, 0}
if rl then out[6], out[7], out[8], out[9] = rl, rr - (n - rb), rx, rp end
if tl then out[10], out[11], out[12], out[13] = tl, tr - (nt - tb), tx, tp end
return out
`;

/**
 * KEYS: 1 replicas, 2 this replica's slots. ARGV: 1 now, 2 replica id, 3 live cutoff, 4 slot TTL ms.
 * Says this replica is alive and forgets replicas silent since the cutoff (their slot hashes expire on
 * their own: nobody refreshes them).
 */
export const HEARTBEAT = `
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], 10 * tonumber(ARGV[4]))
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
`;

/**
 * KEYS[1] this replica's slots. ARGV: 1 slot TTL ms, then field, count pairs. Replaces what Redis holds
 * for this replica with what it really has in flight (after an outage, or a call that may have been lost).
 */
export const RESET_SLOTS = `
redis.call('DEL', KEYS[1])
for j = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[j], ARGV[j + 1]) end
if #ARGV > 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
`;
