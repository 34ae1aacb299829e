"""Named SQL connections: one resource per connection a source names, shared by every source
that names it.

A connection's URL (``postgresql+psycopg2://…``, ``mysql+pymysql://…``) holds its
credentials, so it comes from the environment or a secret file, never from a declaration, and
never appears in metadata or logs: ``ML_ASSETS_SQL_<NAME>_URL`` gives it, or
``ML_ASSETS_SQL_<NAME>_URL_FILE`` names a file that holds it (a mounted secret).
"""

import os

import dagster as dg

from resources.secrets import read_secret

PREFIX = "sql_"


def resource_key(connection: str) -> str:
    """The resource key of the connection named ``connection`` in a declaration."""
    return f"{PREFIX}{connection}"


def url_variable(connection: str) -> str:
    return f"ML_ASSETS_SQL_{connection.upper()}_URL"


def url_file_variable(connection: str) -> str:
    return f"ML_ASSETS_SQL_{connection.upper()}_URL_FILE"


class SqlConnection(dg.ConfigurableResource):
    """One database: its URL, given directly or as the path of a secret file holding it."""

    name: str
    """The connection's name, as sources name it (safe to show)."""
    url: str | None = None
    url_file: str | None = None

    def secret_url(self) -> str:
        """The SQLAlchemy URL, with its credentials: pass it to the driver, never show it."""
        url = read_secret(self.url, self.url_file)
        if url:
            return url
        raise dg.Failure(
            f"connection {self.name!r} has no URL: set {url_variable(self.name)}, or "
            f"{url_file_variable(self.name)} to a file that holds it"
        )

    def dialect(self) -> str:
        """The database's kind (``postgresql``, ``mysql``), safe to show."""
        return self.secret_url().split(":", 1)[0].split("+", 1)[0]


def sql_connection(name: str) -> SqlConnection:
    """The connection ``name`` as the environment configures it: from a secret file when
    ``..._URL_FILE`` is set, else from ``..._URL`` (read when a run starts)."""
    if os.environ.get(url_file_variable(name)):
        return SqlConnection(name=name, url_file=dg.EnvVar(url_file_variable(name)))
    return SqlConnection(name=name, url=dg.EnvVar(url_variable(name)))
