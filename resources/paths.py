"""Paths that may be local or remote (``s3://...``), and writes that never leave half a file."""

import uuid

from upath import UPath


def to_upath(url: str) -> UPath:
    """A universal path for a local directory or an fsspec URL such as ``s3://bucket/prefix``."""
    return UPath(url)


def is_local(path: UPath) -> bool:
    return path.protocol in ("", "file", "local")


def write_bytes_atomically(path: UPath, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a torn one.

    Locally the bytes go to a sibling temporary file that is then renamed over the target (an
    atomic ``rename`` on POSIX). An object store PUT is already atomic, so remote paths are
    written directly.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not is_local(path):
        path.write_bytes(data)
        return
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.rename(path)
    finally:
        tmp.unlink(missing_ok=True)
