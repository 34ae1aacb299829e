"""What every named connection shares, whatever it reaches (a database, a message broker): a
name a declaration uses, and a URL holding the credentials that comes from the environment or
a secret file, never from a declaration, and never appears in metadata or logs.

Each kind names its two variables (``ML_ASSETS_SQL_<NAME>_URL`` gives the URL of the sql
connection ``<name>``, ``ML_ASSETS_SQL_<NAME>_URL_FILE`` names a file that holds it: a mounted
secret).
"""

import os
from typing import ClassVar, TypeVar

import dagster as dg

from resources.secrets import read_secret


class NamedConnection(dg.ConfigurableResource):
    """One named connection: its URL, given directly or as the path of a secret file holding it."""

    URL_VARIABLE: ClassVar[str]
    """The variable holding the URL of the connection ``<NAME>`` (its name in upper case)."""
    URL_FILE_VARIABLE: ClassVar[str]
    """The variable naming a file that holds it."""

    name: str
    """The connection's name, as sources name it (safe to show)."""
    url: str | None = None
    url_file: str | None = None

    def secret_url(self) -> str:
        """The URL, with its credentials: pass it to the client, never show it."""
        url = read_secret(self.url, self.url_file)
        if url:
            return url
        raise dg.Failure(
            f"connection {self.name!r} has no URL: set {self.url_variable(self.name)}, or "
            f"{self.url_file_variable(self.name)} to a file that holds it"
        )

    @classmethod
    def url_variable(cls, name: str) -> str:
        return cls.URL_VARIABLE.replace("<NAME>", name.upper())

    @classmethod
    def url_file_variable(cls, name: str) -> str:
        return cls.URL_FILE_VARIABLE.replace("<NAME>", name.upper())


Connection = TypeVar("Connection", bound=NamedConnection)


def from_environment(kind: type[Connection], name: str) -> Connection:
    """The connection ``name`` of ``kind`` as the environment configures it: from a secret file
    when ``..._URL_FILE`` is set, else from ``..._URL`` (read when a run starts)."""
    file_variable = kind.url_file_variable(name)
    if os.environ.get(file_variable):
        return kind(name=name, url_file=dg.EnvVar(file_variable))
    return kind(name=name, url=dg.EnvVar(kind.url_variable(name)))
