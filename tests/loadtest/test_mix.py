"""The request mix: parsed from its text, and every encoding decodes to the same request in the service."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import pytest

from loadtest.mix import ENCODINGS, MSGPACK, MixEntry, build_pool, encode, parse_mix
from models.sim.simulator import Simulator
from service.body import Body
from service.decode import decode_body
from service.schema import RankRequest


def test_a_mix_parses_into_weighted_kinds_of_request() -> None:
    mix = parse_mix("json-by-id:1000:2, msgpack-tensor:100:0.5")

    assert mix == [MixEntry("json-by-id", 1000, 2.0), MixEntry("msgpack-tensor", 100, 0.5)]
    assert mix[0].name == "/v1/rank [json-by-id 1000]"


@pytest.mark.parametrize("text", ["", "xml:10:1", "json-inline:ten:1", "json-inline:10:0", "json-inline:10"])
def test_a_bad_mix_is_refused_naming_the_entry(text: str) -> None:
    with pytest.raises(ValueError, match="mix"):
        parse_mix(text)


def test_every_encoding_carries_the_same_candidates_to_the_service() -> None:
    sim = Simulator(seed=0)
    pool = build_pool(sim, [MixEntry(e, 30, 1.0) for e in ENCODINGS], np.random.default_rng(0), per_entry=1, k=5)
    inline: dict[str, Any] = pool[MixEntry("json-inline", 30, 1.0)][0].body

    decoded = {}
    for encoding in ENCODINGS:
        raw, content_type = encode(inline, encoding)
        decoded[encoding] = decode_body(Body(raw, "msgpack" if content_type == MSGPACK else "json"), RankRequest)

    ids = [decoded[e].candidates.ids for e in ENCODINGS]
    assert ids[0] == ids[1] == ids[2] == inline["candidates"]["ids"]
    assert decoded["json-by-id"].candidates.features is None
    assert decoded["msgpack-tensor"].candidates.features is not None
    assert msgspec.json.decode(encode(inline, "json-inline")[0]) == inline
