"""On a Redis Cluster, every key one script touches must hash to one slot, or Redis refuses the script
(CROSSSLOT) on every call. The names the service derives its script keys from are settings, so a
mismatch is a configuration error: it is refused at start-up, naming the settings, instead of
answering every feedback or routing change with a 503 afterwards.

Redis Cluster hashes only a key's hash tag, the text between its first '{' and the next '}', when
there is one (https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#hash-tags).
"""

from __future__ import annotations

from redis.crc import key_slot

from contracts.routing import routing_channel, routing_key
from contracts.streams import decision_index_key, feedback_seen_key

_EXAMPLE = (
    "e.g. CASCADE_DECISION_STREAM={cascade}:decisions, CASCADE_FEEDBACK_STREAM={cascade}:feedback, "
    "CASCADE_ROUTING_NAMESPACE={cascade}"
)


def cross_slot_scripts(decision_stream: str, feedback_stream: str, routing_namespace: str) -> list[str]:
    """What each script whose keys span several slots needs; empty when every script is single-slot."""
    problems = []
    # The feedback script reads the decision index and writes the seen key and the feedback stream.
    feedback_keys = [
        decision_index_key(decision_stream, 0),
        feedback_seen_key(feedback_stream, "request", "event"),
        feedback_stream,
    ]
    if len({key_slot(key.encode()) for key in feedback_keys}) > 1:
        problems.append(
            "the feedback script's keys span several slots: give CASCADE_DECISION_STREAM and "
            "CASCADE_FEEDBACK_STREAM one hash tag"
        )
    # The routing scripts change a policy's routing hash and announce it on the routing channel.
    if key_slot(routing_key(routing_namespace, "policy").encode()) != key_slot(
        routing_channel(routing_namespace).encode()
    ):
        problems.append("the routing scripts' keys span several slots: give CASCADE_ROUTING_NAMESPACE a hash tag")
    return [f"{problem} ({_EXAMPLE})" for problem in problems]
