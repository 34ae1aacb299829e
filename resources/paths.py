"""Paths that may be local or remote (``s3://...``): writes that never leave half a file, and
reads and writes that retry transient object-store errors, then fail naming the object.

On S3 every request is retried by botocore (``standard`` mode: exponential backoff with jitter,
throttling and 5xx answers included) up to ``$AWS_MAX_ATTEMPTS`` attempts (default 5; the
mode is ``$AWS_RETRY_MODE``, as for any AWS client), and s3fs retries throttled requests
(``SlowDown``) five more times on top.
"""

import os
import uuid

from upath import UPath

RETRY_MODE_ENV_VAR = "AWS_RETRY_MODE"
MAX_ATTEMPTS_ENV_VAR = "AWS_MAX_ATTEMPTS"
DEFAULT_RETRY_MODE = "standard"
DEFAULT_MAX_ATTEMPTS = 5


def _storage_options(url: str) -> dict:
    """s3fs options of ``url``: botocore's retries (none for other file systems)."""
    if not url.startswith(("s3://", "s3a://")):
        return {}
    retries = {
        "mode": os.environ.get(RETRY_MODE_ENV_VAR) or DEFAULT_RETRY_MODE,
        "total_max_attempts": int(os.environ.get(MAX_ATTEMPTS_ENV_VAR) or DEFAULT_MAX_ATTEMPTS),
    }
    return {"config_kwargs": {"retries": retries}}


def to_upath(url: str) -> UPath:
    """A universal path for a local directory or an fsspec URL such as ``s3://bucket/prefix``."""
    return UPath(url, **_storage_options(url))


def is_local(path: UPath) -> bool:
    return path.protocol in ("", "file", "local")


def _failed(action: str, path: UPath, error: OSError) -> OSError:
    """``error`` (after the retries) with the object it concerns in its message."""
    return OSError(error.errno, f"{action} {path} failed: {error.strerror or error}")


def read_bytes(path: UPath) -> bytes:
    """The bytes of ``path``, all of one version: on an object store one GET of the whole
    object (opening it as a file would read its size, then ranges, and fail when it is
    replaced in between). A missing file raises ``FileNotFoundError``; any other error, once
    retried, an ``OSError`` naming the object."""
    try:
        return path.read_bytes() if is_local(path) else path.fs.cat_file(path.path)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise _failed("reading", path, error) from error


def write_bytes_atomically(path: UPath, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a torn one.

    Locally the bytes go to a sibling temporary file that is then renamed over the target (an
    atomic ``rename`` on POSIX). On an object store they are one PUT of the whole object, which
    replaces it atomically (s3fs's ``pipe_file``; a multipart upload above 100 MB is atomic
    too: the object appears when it completes). An error, once retried, names the object.
    """
    if not is_local(path):
        try:
            path.fs.pipe_file(path.path, data)
        except OSError as error:
            raise _failed("writing", path, error) from error
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.rename(path)
    finally:
        tmp.unlink(missing_ok=True)
