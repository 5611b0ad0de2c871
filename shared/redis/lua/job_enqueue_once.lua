-- arq's `enqueue_job` in one step (it takes three round trips on a pooled connection: WATCH,
-- EXISTS, then MULTI/EXEC): nothing when the job or its result exists, else the job key with
-- its expiry and the queue entry, the keys and payload arq's workers read. arq's queues
-- already need a single primary, so several keys in one script are fine here.
-- KEYS: job, result, queue. ARGV: payload, expiry ms, job id, score (due time, ms).
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
return 1
