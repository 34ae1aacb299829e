"""Secret settings of connections: given directly (an environment variable) or as the path of
a secret file holding them (a mounted secret), read when a run starts, never shown."""

from pathlib import Path


def read_secret(value: str | None, file: str | None) -> str | None:
    """The content of the secret ``file`` when one is named, else ``value`` (None: neither)."""
    if file:
        return Path(file).read_text().strip()
    return value or None
