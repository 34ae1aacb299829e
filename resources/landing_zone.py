"""The landing zone: where upstream systems drop their exports, one file per source and day.

Layout: ``<url>/<source>/<partition_key>.<ext>`` for partitioned sources (one file per
partition) and ``<url>/<source>/<name>.<ext>`` for reference tables; ``ext`` is the source's
declared format (``.csv`` unless told otherwise). The URL is a local
directory by default and may be any fsspec URL (``s3://bucket/landing``) in production.
"""

import hashlib
from dataclasses import dataclass

import dagster as dg

from ml_assets.home import landing_zone_url
from resources.paths import read_bytes, to_upath, write_bytes_atomically

CSV = ".csv"


@dataclass(frozen=True)
class LandedFile:
    """One file in the landing zone, as seen by a listing (no content read)."""

    source: str
    name: str
    """The file name without extension: the partition key for daily sources."""
    path: str
    stat_signature: str
    """Changes whenever the file is rewritten: size and mtime locally, the ETag on S3."""


class LandingZone(dg.ConfigurableResource):
    """Read and write access to the landing zone at ``url`` (local path or fsspec URL)."""

    url: str

    def _file(self, source: str, name: str, ext: str):
        return to_upath(self.url) / source / f"{name}{ext}"

    def uri(self, source: str, name: str, ext: str = CSV) -> str:
        return str(self._file(source, name, ext))

    def exists(self, source: str, name: str, ext: str = CSV) -> bool:
        return self._file(source, name, ext).exists()

    def read_bytes(self, source: str, name: str, ext: str = CSV) -> bytes:
        return read_bytes(self._file(source, name, ext))

    def write_bytes(self, source: str, name: str, data: bytes, ext: str = CSV) -> str:
        """Land ``data`` atomically as ``<source>/<name><ext>``; returns the file's URI."""
        path = self._file(source, name, ext)
        write_bytes_atomically(path, data)
        return str(path)

    def list_files(self, source: str, ext: str = CSV) -> list[LandedFile]:
        """Every landed file of ``source``, sorted by name; temporary files are ignored."""
        directory = to_upath(self.url) / source
        if not directory.exists():
            return []
        files = []
        for entry in directory.fs.ls(directory.path, detail=True):
            name = entry["name"].rsplit("/", 1)[-1]
            if entry.get("type") != "file" or name.startswith(".") or not name.endswith(ext):
                continue
            files.append(
                LandedFile(
                    source=source,
                    name=name.removesuffix(ext),
                    path=str(directory / name),
                    stat_signature=_stat_signature(entry),
                )
            )
        return sorted(files, key=lambda f: f.name)

    def content_hash(self, source: str, name: str, ext: str = CSV) -> str:
        """A digest of the file's bytes: the identity of what was landed."""
        return hashlib.sha256(self.read_bytes(source, name, ext)).hexdigest()[:16]


def default_landing_zone() -> LandingZone:
    return LandingZone(url=landing_zone_url())


def _stat_signature(entry: dict) -> str:
    etag = entry.get("ETag") or entry.get("etag")
    if etag:
        return str(etag).strip('"')
    mtime = entry.get("mtime") or entry.get("LastModified") or entry.get("created")
    return f"{entry.get('size')}:{mtime}"
