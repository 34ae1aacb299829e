"""Named REST API connections: one resource per connection a source names, shared by every
source that names it.

A connection's base URL comes from ``ML_ASSETS_REST_<NAME>_URL`` and its bearer token from
``ML_ASSETS_REST_<NAME>_TOKEN``, or from the secret file that ``ML_ASSETS_REST_<NAME>_TOKEN_FILE``
names (a mounted secret); an API that takes no token has neither. Neither the URL nor the token
is ever shown in metadata or logs: sources show the connection's name.
"""

import os

import dagster as dg

from resources.secrets import read_secret

PREFIX = "rest_"


def resource_key(connection: str) -> str:
    """The resource key of the connection named ``connection`` in a declaration."""
    return f"{PREFIX}{connection}"


def url_variable(connection: str) -> str:
    return f"ML_ASSETS_REST_{connection.upper()}_URL"


def token_variable(connection: str) -> str:
    return f"ML_ASSETS_REST_{connection.upper()}_TOKEN"


def token_file_variable(connection: str) -> str:
    return f"ML_ASSETS_REST_{connection.upper()}_TOKEN_FILE"


class RestConnection(dg.ConfigurableResource):
    """One API: its base URL and its bearer token, given directly or as a secret file."""

    name: str
    """The connection's name, as sources name it (safe to show)."""
    url: str | None = None
    token: str | None = None
    token_file: str | None = None

    def base_url(self) -> str:
        """The API's base URL: pass it to the client, never show it (it may hold a key)."""
        if not self.url:
            raise dg.Failure(f"connection {self.name!r} has no URL: set {url_variable(self.name)}")
        return self.url

    def secret_token(self) -> str | None:
        """The bearer token (None: the API takes none): send it, never show it."""
        return read_secret(self.token, self.token_file)


def rest_connection(name: str) -> RestConnection:
    """The connection ``name`` as the environment configures it (read when a run starts): its
    token from the secret file when ``..._TOKEN_FILE`` is set, else from ``..._TOKEN`` when
    that is set."""
    token = {}
    if os.environ.get(token_file_variable(name)):
        token = {"token_file": dg.EnvVar(token_file_variable(name))}
    elif os.environ.get(token_variable(name)):
        token = {"token": dg.EnvVar(token_variable(name))}
    return RestConnection(name=name, url=dg.EnvVar(url_variable(name)), **token)
