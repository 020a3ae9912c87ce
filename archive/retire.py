"""Retiring decision shards nobody has written to for a while, once everything in them is archived.

Every serving worker process is a producer with shards of its own (contracts/streams.py), so every
restart and every rolling deploy leaves shards that nobody appends to again. Trimmed empty, each still
costs a key, a registry member and a read per archiver pass, without end. A shard is retired (deleted,
then unregistered) when, in one script on its own key (so on any node of a cluster):
- its last entry id, whose milliseconds are the producer's decision time, is older than `idle_seconds`;
- no group has an entry pending (delivered, not acknowledged: a reader still holds it in memory);
- nothing in it is unread: every group has been delivered its last entry, or it holds no entry at all
  (a stream no group reads is retired only once empty). So the archiver, and every other group, has
  archived and acknowledged all of it; a shard a lagging group held back when the archiver trimmed it
  goes once that group is done, without waiting for a trim that nothing would trigger any more.

A live producer whose policy went quiet may see its shard retired: its next batch recreates the shard
and registers it again (service/shard_writer.py registers after appending, every batch). What a delete
costs is the shard's memory of its last id, which is what refuses a replayed batch entry by entry; a
spool replayed into a retired shard after `idle_seconds` (default one hour; spools are replayed as soon
as Redis answers) would be appended again, and the lake's readers drop the duplicate request ids.

Unregistering after the delete races with a producer recreating the shard: its append can land after
the delete and its registration before our SREM. So after the SREM the shard is looked up once more and
registered again if it exists; an append after that lookup is registered after it.
"""

from __future__ import annotations

import time
from typing import Any

from archive.stream_consumer import Client
from contracts.streams import decision_shards_key

# KEYS[1]: a shard. ARGV[1]: the idle bound, epoch milliseconds. Deletes it and returns 1 when it is
# done (see above) and its last id is older than the bound; returns 2 when there is no such key
# (registered by a batch whose appends Redis refused); else 0.
_RETIRE_IF_DONE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 2
end
local function field(flat, name)
  for i = 1, #flat, 2 do
    if flat[i] == name then
      return flat[i + 1]
    end
  end
end
local last = field(redis.call('XINFO', 'STREAM', KEYS[1]), 'last-generated-id')
if tonumber(string.match(last, '^%d+')) >= tonumber(ARGV[1]) then
  return 0
end
local empty = redis.call('XLEN', KEYS[1]) == 0
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 and not empty then
  return 0
end
for _, group in ipairs(groups) do
  if field(group, 'pending') > 0 or not (empty or field(group, 'last-delivered-id') == last) then
    return 0
  end
end
redis.call('DEL', KEYS[1])
return 1
"""


def retire_idle_shards(client: Client, base: str, idle_seconds: float) -> list[str]:
    """Delete and unregister every shard of the decision stream `base` that is done and idle for at least
    `idle_seconds` (and unregister names with no stream); returns the names gone (with their groups)."""
    registry = decision_shards_key(base)
    bound_ms = int((time.time() - idle_seconds) * 1000)
    members: Any = client.smembers(registry)
    deleted = []
    for name in sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members):
        if not int(client.eval(_RETIRE_IF_DONE, 1, name, bound_ms)):
            continue
        deleted.append(name)
        client.srem(registry, name)
        if client.exists(name):  # recreated between the delete and the SREM: its producer registered it before
            client.sadd(registry, name)
    return deleted
