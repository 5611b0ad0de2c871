"""The one way a Lua script is loaded: its source is `shared/redis/lua/<name>.lua`.

Every script of the service lives in that directory, each file's header naming its KEYS,
ARGV and reply (docs/architecture.md, "Lua scripts"). A store registers it on its client
with `load_script`: on the API's and workers' client (`ScriptRoutingRedis`) a call goes
through the multiplexed connection by EVALSHA (EVAL once after a SCRIPT FLUSH); inside a
pipeline it is queued there, as redis-py's own scripts are.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

LUA_PACKAGE = "shared.redis"
LUA_DIRECTORY = "lua"


@cache
def lua_source(name: str) -> str:
    """The source of `lua/<name>.lua` (read once per process)."""
    return resources.files(LUA_PACKAGE).joinpath(f"{LUA_DIRECTORY}/{name}.lua").read_text()


def load_script(redis: Redis, name: str) -> AsyncScript:
    """Script `name` registered on `redis` (nothing is sent until its first call)."""
    return redis.register_script(lua_source(name))
