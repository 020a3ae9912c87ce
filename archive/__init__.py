"""The archiver: Redis Streams (a bounded buffer) → the Parquet lake (contracts/lake.py).

Imports only contracts/ of ours; runs with the `serve` extra (redis, pyarrow), so the serving
parent can run it beside the embedded Redis.
"""
