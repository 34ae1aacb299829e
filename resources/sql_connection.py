"""Named SQL connections: one resource per connection a source names, shared by every source
that names it.

A connection's URL (``postgresql+psycopg2://…``, ``mysql+pymysql://…``) holds its
credentials, so it comes from ``ML_ASSETS_SQL_<NAME>_URL`` or the secret file named by
``ML_ASSETS_SQL_<NAME>_URL_FILE`` (``resources.named_connection``).
"""

from resources.named_connection import NamedConnection, from_environment

PREFIX = "sql_"


def resource_key(connection: str) -> str:
    """The resource key of the connection named ``connection`` in a declaration."""
    return f"{PREFIX}{connection}"


class SqlConnection(NamedConnection):
    """One database."""

    URL_VARIABLE = "ML_ASSETS_SQL_<NAME>_URL"
    URL_FILE_VARIABLE = "ML_ASSETS_SQL_<NAME>_URL_FILE"

    def dialect(self) -> str:
        """The database's kind (``postgresql``, ``mysql``), safe to show."""
        return self.secret_url().split(":", 1)[0].split("+", 1)[0]


def sql_connection(name: str) -> SqlConnection:
    """The database ``name`` as the environment configures it."""
    return from_environment(SqlConnection, name)
