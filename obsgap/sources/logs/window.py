"""The window rule: a request belongs to [start, end) by its time; an undated one is kept and counted."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def outside(ts: int, start_ms: int | None, end_ms: int | None) -> bool:
    return (start_ms is not None and ts < start_ms) or (end_ms is not None and ts >= end_ms)


def outside_mask(ts: pa.Array, start_ms: int | None, end_ms: int | None) -> pa.Array:
    """`outside` over a column (null times are never outside)."""
    mask = pa.array(np.zeros(len(ts), bool))
    if start_ms is not None:
        mask = pc.or_(mask, pc.fill_null(pc.less(ts, start_ms), False))
    if end_ms is not None:
        mask = pc.or_(mask, pc.fill_null(pc.greater_equal(ts, end_ms), False))
    return mask
