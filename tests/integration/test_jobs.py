"""The scoring job is queued once per session, in arq's own format (a real worker reads it)."""

from arq.constants import job_key_prefix
from arq.jobs import deserialize_job as arq_deserialize_job
from redis.asyncio import Redis

from shared.config import Settings
from shared.jobs import FRAUD_QUEUE, TASK_SCORE_SESSION, JobQueue, deserialize_job
from shared.redis.keys import Keys
from shared.wiring import arq_client


async def test_scoring_is_queued_once_in_arqs_format(redis: Redis, settings: Settings) -> None:
    keys = Keys(settings.key_prefix)
    queue = JobQueue(arq_client(redis), keys)
    await queue.enqueue_scoring("cs_0abcdefghijklmno")
    await queue.enqueue_scoring("cs_0abcdefghijklmno")
    job_id = f"{settings.key_prefix}:score:cs_0abcdefghijklmno"
    assert await redis.zrange(keys.arq_queue(FRAUD_QUEUE), 0, -1) == [job_id.encode()]
    raw = await redis.get(job_key_prefix + job_id)
    assert raw is not None
    job = arq_deserialize_job(raw, deserializer=deserialize_job)
    # msgpack has no tuples: arq calls the task with *args either way.
    assert (job.function, list(job.args), job.kwargs) == (
        TASK_SCORE_SESSION,
        ["cs_0abcdefghijklmno"],
        {},
    )
    assert 0 < await redis.pttl(job_key_prefix + job_id) <= 86_400_000
