"""Where the service listens and the admin token, from the environment or ``$ML_ASSETS_HOME``."""

import os
import secrets
from urllib.parse import urlsplit

from ml_assets.home import ml_assets_home

URL_ENV_VAR = "ML_ASSETS_SERVING_URL"
TOKEN_ENV_VAR = "ML_ASSETS_SERVING_TOKEN"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8700
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def serving_url() -> str:
    """``$ML_ASSETS_SERVING_URL`` (a service someone else runs) or the local default."""
    return os.environ.get(URL_ENV_VAR) or f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"


def is_local_service() -> bool:
    """True when the service belongs on this machine (the default URL, or a loopback one):
    the platform may then start it. A service elsewhere (production) is never started."""
    return urlsplit(serving_url()).hostname in LOOPBACK


def admin_token() -> str:
    """``$ML_ASSETS_SERVING_TOKEN``; locally, a random token kept (mode 600) under the home."""
    configured = os.environ.get(TOKEN_ENV_VAR)
    if configured:
        return configured
    path = ml_assets_home() / "serving" / "admin-token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(32))
    return path.read_text().strip()
