"""What every named connection shares, whatever it reaches (a database, a message broker): a
name a declaration uses, and a URL holding the credentials that comes from the environment or
a secret file, never from a declaration, and never appears in metadata or logs.

``ML_ASSETS_<KIND>_<NAME>_URL`` gives the URL of the connection ``name`` of a kind (``SQL``,
``STREAM``), or ``ML_ASSETS_<KIND>_<NAME>_URL_FILE`` names a file that holds it (a mounted
secret).
"""

import os
from pathlib import Path
from typing import ClassVar, TypeVar

import dagster as dg


def url_variable(kind: str, connection: str) -> str:
    return f"ML_ASSETS_{kind.upper()}_{connection.upper()}_URL"


def url_file_variable(kind: str, connection: str) -> str:
    return f"{url_variable(kind, connection)}_FILE"


class NamedConnection(dg.ConfigurableResource):
    """One named connection: its URL, given directly or as the path of a secret file holding it."""

    KIND: ClassVar[str]
    """What it connects to (``sql``, ``stream``): the resource key's prefix and the variables'."""

    name: str
    """The connection's name, as sources name it (safe to show)."""
    url: str | None = None
    url_file: str | None = None

    def secret_url(self) -> str:
        """The URL, with its credentials: pass it to the client, never show it."""
        if self.url_file:
            return Path(self.url_file).read_text().strip()
        if self.url:
            return self.url
        raise dg.Failure(
            f"connection {self.name!r} has no URL: set {url_variable(self.KIND, self.name)}, or "
            f"{url_file_variable(self.KIND, self.name)} to a file that holds it"
        )


Connection = TypeVar("Connection", bound=NamedConnection)


def from_environment(kind: type[Connection], name: str) -> Connection:
    """The connection ``name`` of ``kind`` as the environment configures it: from a secret file
    when ``..._URL_FILE`` is set, else from ``..._URL`` (read when a run starts)."""
    file_variable = url_file_variable(kind.KIND, name)
    if os.environ.get(file_variable):
        return kind(name=name, url_file=dg.EnvVar(file_variable))
    return kind(name=name, url=dg.EnvVar(url_variable(kind.KIND, name)))
