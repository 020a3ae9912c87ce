"""The formats every part of cascade-serve shares, each declared once.

Producers and consumers import these modules instead of re-declaring a field: the bundle manifest
and graph signatures (`manifest`), the store layout and its pointer files (`store`, `versions`), the
item table (`item_table`), the decision record (`decision_record`), the feedback record
(`feedback_record`), stream and key names (`streams`) and the routing state (`routing`).

numpy, msgspec and pydantic only: no torch, onnxruntime, FastAPI or Redis client, and nothing
else of ours, so a trainer, the exporter and the service can each import it alone.
"""
