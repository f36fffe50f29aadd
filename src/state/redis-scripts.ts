// The Lua scripts of the Redis store: every state change that must be atomic is one script, one round
// trip. Each mirrors the reference semantics in memory-store.ts line for line; the contract suite
// (test/state/store.contract.test.ts) holds both to them. Numbers are epoch ms, as the replicas' clocks
// give them (replicas must keep their clocks in sync, as for cooldown deadlines).
//
// Keys (P = the configured prefix):
//   P f:<fact id>                 a fact: "expiry|message", PX at its deadline
//   P L:<upstream>:<fp>           hand-set windows of a key: rs rc (rpm start, count), ts tc (tpm); PX one window
//   P S:<upstream>:<fp>:<model>   sent counters n nt, and the upstream's buckets r* / t* (l limit, r remaining,
//                                 x reset at, p period, b base); PX past the buckets' reset
//   P slots:<replica>             in-flight slots of one replica, field "<upstream>|<fp>"; PX replica timeout
//   P replicas                    sorted set: replica -> last heartbeat
//   P rr:<upstream>               round-robin ticket
//   P usage:<upstream>            usage counters, field "<fp>:<counter>"
// Slot hashes of other replicas are named in the scripts, not passed as KEYS: keypool supports a
// standalone Redis (or Sentinel), not Redis Cluster.

/**
 * KEYS[1] the fact, KEYS[2] the channel; ARGV[1] expiry (epoch ms), ARGV[2] TTL ms, ARGV[3] the message.
 * Stores `expiry|message` unless a fact that lasts at least as long is already there, then publishes.
 */
export const EXTEND_AND_PUBLISH = `
local held = redis.call('GET', KEYS[1])
if held then
  local expiry = tonumber(string.match(held, '^(%d+)|'))
  if expiry and expiry >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[3], 'PX', ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[3])
return 1
`;

/** Sums a key's slots over the live replicas; this replica (ARGV rid) always counts. */
const INFLIGHT = `
local function inflight(replicas, mine, cutoff, slotsPrefix, rid, field)
  local n = tonumber(redis.call('HGET', mine, field)) or 0
  for _, other in ipairs(redis.call('ZRANGEBYSCORE', replicas, cutoff, '+inf')) do
    if other ~= rid then n = n + (tonumber(redis.call('HGET', slotsPrefix .. other, field)) or 0) end
  end
  return n
end
`;

/**
 * KEYS: 1 windows (L), 2 scope (S), 3 replicas, 4 this replica's slots, 5 round-robin ticket, 6 usage.
 * ARGV: 1 now, 2 tokens, 3 rpm, 4 tpm, 5 maxConcurrent ('' = none), 6 live cutoff, 7 slots prefix,
 *       8 slot field, 9 slot TTL ms, 10 replica id, 11 usage field, 12 window ms.
 * Returns {0, why, until} (until -1 = a free slot), or {1, sent, sentTokens, inflight, ticket}.
 */
export const TAKE = `${INFLIGHT}
local now = tonumber(ARGV[1])
local tokens = tonumber(ARGV[2])
local W = tonumber(ARGV[12])
local rpm, tpm, maxc = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local l = redis.call('HMGET', KEYS[1], 'rs', 'rc', 'ts', 'tc')
local rs, rc, ts, tc = tonumber(l[1]) or 0, tonumber(l[2]) or 0, tonumber(l[3]) or 0, tonumber(l[4]) or 0
local s = redis.call('HMGET', KEYS[2], 'n', 'nt', 'rl', 'rr', 'rx', 'rp', 'rb', 'tl', 'tr', 'tx', 'tp', 'tb')
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

local held = inflight(KEYS[3], KEYS[4], ARGV[6], ARGV[7], ARGV[10], ARGV[8])
if maxc and held >= maxc then return {0, 'slots', -1} end

if now >= rs + W then rs, rc = now, 0 end
if now >= ts + W then ts, tc = now, 0 end
redis.call('HSET', KEYS[1], 'rs', rs, 'rc', rc + 1, 'ts', ts, 'tc', tc + tokens)
redis.call('PEXPIRE', KEYS[1], W)
local ttl = 2 * W
if rl then
  if now >= rx then
    rx = now + math.max(1, rp)
    redis.call('HSET', KEYS[2], 'rr', rl, 'rb', n, 'rx', rx)
  end
  ttl = math.max(ttl, rx - now + rp + W)
end
if tl then
  if now >= tx then
    tx = now + math.max(1, tp)
    redis.call('HSET', KEYS[2], 'tr', tl, 'tb', nt, 'tx', tx)
  end
  ttl = math.max(ttl, tx - now + tp + W)
end
n, nt = n + 1, nt + tokens
redis.call('HSET', KEYS[2], 'n', n, 'nt', nt)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('HINCRBY', KEYS[4], ARGV[8], 1)
redis.call('PEXPIRE', KEYS[4], ARGV[9])
redis.call('HINCRBY', KEYS[6], ARGV[11], 1)
local ticket = redis.call('INCR', KEYS[5])
return {1, n, nt, held + 1, ticket}
`;

/**
 * KEYS: 1 this replica's slots, 2 usage, 3 replicas, 4 channel.
 * ARGV: 1 slot field, 2 usage field ('' = none), 3 maxConcurrent ('' = none), 4 live cutoff,
 *       5 slots prefix, 6 replica id, 7 the "freed" message.
 * Frees one of this replica's slots (none left: a slot already reclaimed, nothing to do), counts the
 * outcome, and tells the others when the key was full before.
 */
export const RELEASE = `${INFLIGHT}
if ARGV[2] ~= '' then redis.call('HINCRBY', KEYS[2], ARGV[2], 1) end
local mine = tonumber(redis.call('HGET', KEYS[1], ARGV[1])) or 0
if mine == 0 then return 0 end
if mine == 1 then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HINCRBY', KEYS[1], ARGV[1], -1) end
local maxc = tonumber(ARGV[3])
if maxc and inflight(KEYS[3], KEYS[1], ARGV[4], ARGV[5], ARGV[6], ARGV[1]) + 1 >= maxc then
  redis.call('PUBLISH', KEYS[4], ARGV[7])
end
return 1
`;

/**
 * KEYS[1] the scope (S). ARGV: 1 now, 2 mark sent, 3 mark tokens, then requests 4..7 and tokens 8..11
 * as limit, remaining, reset at, period ('' when the response had no such bucket), 12 window ms.
 * A bucket is taken unless the one held came from a later request (a higher mark).
 */
export const REPORT = `
local function put(p, limit, remaining, resetAt, period, base)
  if limit == '' then return end
  local h = redis.call('HMGET', KEYS[1], p .. 'b', p .. 'p')
  local heldBase = tonumber(h[1])
  if heldBase and tonumber(base) < heldBase then return end
  local keep = math.max(tonumber(period), tonumber(h[2]) or 0)
  redis.call('HSET', KEYS[1], p .. 'l', limit, p .. 'r', remaining, p .. 'x', resetAt, p .. 'p', keep, p .. 'b', base)
  local ttl = tonumber(resetAt) - tonumber(ARGV[1]) + keep + tonumber(ARGV[12])
  if ttl > redis.call('PTTL', KEYS[1]) then redis.call('PEXPIRE', KEYS[1], math.floor(ttl)) end
end
put('r', ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[2])
put('t', ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[3])
return 1
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
