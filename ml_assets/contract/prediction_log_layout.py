"""The prediction log's layout, shared by the services that write it and the sensor, assets and
rollout step that read it: one folder per pipeline and partition, files that appear whole.

    <log>/<pipeline>/<partition>/<first served_at>-<host>-<pid>-<sequence>-<nonce>.parquet

Predictions dated outside the pipeline's partitions go to ``<log>/<pipeline>/_outside/``.
"""

from typing import TypeVar

Folder = TypeVar("Folder")
"""A local or remote path type with ``/`` (``upath.UPath``)."""

OUTSIDE = "_outside"
"""The folder of predictions whose partition the pipeline does not have."""
COLUMNS = (
    "request_id", "item_index", "served_at", "latency_ms", "model_version", "role", "stage",
    "returned", "item_id", "score", "request",
)  # fmt: skip
"""The columns of a log file."""
IDENTITY = ["request_id", "item_index", "model_version"]
"""What identifies a prediction: a batch retried after a partial write may be in the log twice,
and readers keep it once."""


def partition_folder(log: Folder, pipeline: str, partition: str) -> Folder:
    """Where ``pipeline``'s predictions of ``partition`` are written under the log's root."""
    return log / pipeline / partition  # type: ignore[operator]


def is_log_file(name: str) -> bool:
    """A complete log file (a file being written is hidden until it is renamed into place)."""
    return name.endswith(".parquet") and not name.startswith(".")
