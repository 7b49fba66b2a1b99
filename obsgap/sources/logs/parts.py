"""The normalized request table: its schema, the row of the per-line reader, and the Parquet part writer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

Row = dict[str, Any]


PER_FILE_TYPE = pa.dictionary(pa.int32(), pa.string())  # a few values per part, one per file: stored as codes


SCHEMA = pa.schema([
    ("ts_ms", pa.int64()), ("namespace", PER_FILE_TYPE), ("pod", PER_FILE_TYPE), ("container", PER_FILE_TYPE),
    ("origin", pa.string()), ("direction", pa.string()), ("method", pa.string()), ("path", pa.string()),
    ("protocol", pa.string()), ("status", pa.int32()), ("duration_ms", pa.float64()), ("port", pa.int32()),
    ("authority", pa.string()), ("upstream_cluster", pa.string()), ("upstream_host", pa.string()),
    ("downstream_local", pa.string()), ("downstream_remote", pa.string()), ("response_flags", pa.string()),
    ("file", PER_FILE_TYPE),
])


REPEATING = ["namespace", "pod", "container", "origin", "direction", "method", "protocol", "status", "port",
             "authority", "upstream_cluster", "upstream_host", "downstream_local", "response_flags", "file", "path"]


BATCH_ROWS = 65_536


class PartWriter:
    def __init__(self, path: str) -> None:
        self.path = path
        self.writer: pq.ParquetWriter | None = None
        self.rows: list[Mapping[str, Any]] = []

    def add(self, row: Mapping[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        self.write(pa.Table.from_pylist(self.rows, schema=SCHEMA))
        self.rows = []

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            # temporary parts, scanned whole once: no compression, no statistics, dictionaries only where values repeat
            self.writer = pq.ParquetWriter(self.path, SCHEMA, compression="none", write_statistics=False,
                                           use_dictionary=REPEATING)
        self.writer.write_table(table)

    def close(self) -> None:
        self.flush()
        if self.writer is not None:
            self.writer.close()
