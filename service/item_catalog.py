"""The item table this worker serves, swapped whole like a bundle (load and verify first, then one assignment).

Its routing lives in Redis beside the policies' (a routing hash under the name ITEMS_DIR), so the
same Lua scripts, channel, polling and durable copy (`_items/ROUTING.json`) move every worker of
every replica to a new table. A table verified by admin is the object the swap serves: loaded once.
"""

from __future__ import annotations

import asyncio
import logging
import operator
from pathlib import Path

import numpy as np

from contracts.item_table import ITEMS_DIR, ItemTable, ItemTableError, active_items_version, load_item_table
from service.cascade import F32
from service.problems import invalid_field
from service.routing import RoutingStore

log = logging.getLogger(__name__)

ITEMS_ROUTE = ITEMS_DIR  # the routing "policy" name of the item table


class ItemCatalog:
    """Holds the current ItemTable (or none) and follows the routing state of ITEMS_ROUTE."""

    def __init__(self, store: Path) -> None:
        self._store = store
        self.table: ItemTable | None = None
        self.error: str | None = None
        self._staged: ItemTable | None = None  # verified by admin, swapped in by the next refresh

    @property
    def version(self) -> str | None:
        return self.table.version if self.table else None

    def load(self, version: str) -> ItemTable:
        """Load and verify a version (reusing the current one). Blocking: call from a thread."""
        for known in (self.table, self._staged):
            if known is not None and known.version == version:
                return known
        self._staged = load_item_table(self._store, version)
        return self._staged

    def load_store_active(self) -> None:
        """Serve the store's ACTIVE table (start-up while Redis is unreachable)."""
        version = active_items_version(self._store)
        if version is not None:
            self._swap(version)

    async def refresh(self, routing: RoutingStore) -> None:
        """Swap to the table routing names (restored from the store if Redis lost it); a refused one keeps the old."""
        wanted = (await routing.get(ITEMS_ROUTE)).active
        if wanted is None or wanted == self.version:
            return
        await asyncio.to_thread(self._swap, wanted)

    def _swap(self, version: str) -> None:
        try:
            table = self.load(version)
        except ItemTableError as exc:
            self.error = str(exc)
            log.error("item table %s refused, still serving %s: %s", version, self.version, exc)
            return
        self.table = table  # the swap: one reference assignment
        self._staged = None
        self.error = None
        log.info("item table %s loaded: %d items", version, table.manifest.count)


def rows_of(table: ItemTable | None, ids: list[str]) -> np.ndarray:
    """Row index of each id in the table; 422 naming the first unknown id (or the missing table)."""
    if table is None:
        raise invalid_field("candidates", "candidates given by id only, but this service has no item table loaded")
    rows = table.rows
    try:
        # itemgetter probes the dict for every id in C: about 3× faster than a Python loop over 1,000 ids.
        found = operator.itemgetter(*ids)(rows) if len(ids) > 1 else (rows[ids[0]],)
        return np.fromiter(found, dtype=np.intp, count=len(ids))
    except KeyError:
        bad = next(i for i, item in enumerate(ids) if item not in rows)
        raise invalid_field(
            f"candidates.ids[{bad}]", f"unknown item id '{ids[bad]}' (item table {table.version})"
        ) from None


def table_matrices(table: ItemTable, rows: np.ndarray) -> tuple[F32, F32]:
    """The candidates' feature and prediction rows, gathered into new contiguous float32 arrays."""
    # np.take is several times faster than fancy indexing (array[rows]) for a row gather.
    return np.take(table.features, rows, axis=0), np.take(table.predictions, rows, axis=0)
