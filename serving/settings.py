"""Where the service listens and the admin token, from the environment or ``$ML_ASSETS_HOME``."""

import contextlib
import os
import secrets
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from ml_assets.home import ml_assets_home

TOKEN_ENV_VAR = "ML_ASSETS_SERVING_TOKEN"  # noqa: S105 (variable names, not secrets)
TOKEN_FILE_ENV_VAR = "ML_ASSETS_SERVING_TOKEN_FILE"  # noqa: S105
PROFILE_ENV_VAR, PRODUCTION = "ML_ASSETS_PROFILE", "production"
DEFAULT_HOST = "127.0.0.1"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def url_env_var(pipeline: str) -> str:
    """The variable that points the platform at ``pipeline``'s service elsewhere."""
    return f"ML_ASSETS_{pipeline.upper()}_SERVING_URL"


def serving_url(pipeline: str, port: int) -> str:
    """``$ML_ASSETS_<PIPELINE>_SERVING_URL`` (a service someone else runs), or the local
    default on the pipeline's declared port."""
    return os.environ.get(url_env_var(pipeline)) or f"http://{DEFAULT_HOST}:{port}"


def is_local(url: str) -> bool:
    """True when the service belongs on this machine (a loopback URL): the platform may then
    start it. A service elsewhere (production) is never started."""
    return urlsplit(url).hostname in LOOPBACK


class NoAdminToken(RuntimeError):
    """The production profile has no admin token configured: nothing may start without one."""


def admin_token() -> str:
    """``$ML_ASSETS_SERVING_TOKEN``, or the file ``$ML_ASSETS_SERVING_TOKEN_FILE`` names (a
    mounted secret); locally, a random token kept (mode 600) under the home. The production
    profile (``ML_ASSETS_PROFILE=production``) never makes one up: without a configured token
    it raises ``NoAdminToken``."""
    configured = os.environ.get(TOKEN_ENV_VAR)
    if configured:
        return configured
    secret = os.environ.get(TOKEN_FILE_ENV_VAR)
    if secret:
        return Path(secret).read_text().strip()
    if os.environ.get(PROFILE_ENV_VAR) == PRODUCTION:
        raise NoAdminToken(
            f"The production profile needs the services' admin token: set {TOKEN_ENV_VAR} or "
            f"{TOKEN_FILE_ENV_VAR} (a secret file); a random local token is not made up here."
        )
    path = ml_assets_home() / "serving" / "admin-token"
    if not path.exists():
        _create_token(path)
    return path.read_text().strip()


def _create_token(path: Path) -> None:
    """Write a new token to ``path`` unless another process is first (the platform's steps and
    the services it starts all ask at once on a fresh home): the file appears whole, linked
    from a private temporary file, so no one reads it empty and every process gets one token."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")  # 600
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(32))
        with contextlib.suppress(FileExistsError):  # another process's token won: use it
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
