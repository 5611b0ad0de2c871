-- What an attempt reads: its delivery and its endpoint (same partition tag), in one call on
-- the shared connection instead of a pipeline on a pooled one.
-- KEYS: 1 delivery hash, 2 endpoint hash
return {redis.call('HMGET', KEYS[1], 'doc', 'v', 'body'),
        redis.call('HMGET', KEYS[2], 'doc', 'v', 'sk', 'after')}
