"""The production profile's rules that need no distributed services: secrets only from the
environment or secret files, and nothing starts without them."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from serving_fixtures import free_ports, wait_answering

from ml_assets.home import HOME_ENV_VAR, PROJECT_ROOT, TRACKING_URI_ENV_VAR
from serving.settings import PRODUCTION, PROFILE_ENV_VAR, TOKEN_ENV_VAR, TOKEN_FILE_ENV_VAR

pytestmark = pytest.mark.integration


def _serve(home: Path, **env: str) -> subprocess.Popen:
    [port] = free_ports(1)
    # the session's own settings stay out: a tracking URI another test left would bring its
    # store's champion along
    unset = (TOKEN_ENV_VAR, TOKEN_FILE_ENV_VAR, TRACKING_URI_ENV_VAR)
    environment = {k: v for k, v in os.environ.items() if k not in unset}
    environment.update({HOME_ENV_VAR: str(home), PROFILE_ENV_VAR: PRODUCTION, **env})
    process = subprocess.Popen(
        [sys.executable, "-m", "ml_assets.cli", "serve", "taxi", "--port", str(port)],
        cwd=PROJECT_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    process.port = port  # type: ignore[attr-defined]
    return process


def test_the_service_refuses_to_start_without_an_admin_token(tmp_path: Path) -> None:
    process = _serve(tmp_path)
    _, errors = process.communicate(timeout=120)
    assert process.returncode == 2
    assert TOKEN_ENV_VAR in errors and TOKEN_FILE_ENV_VAR in errors
    assert not (tmp_path / "serving" / "admin-token").exists()  # none was made up


def test_the_service_takes_its_token_from_a_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "secrets" / "serving-token"
    secret.parent.mkdir()
    secret.write_text("a-token-from-a-mounted-secret\n")
    process = _serve(tmp_path / "home", **{TOKEN_FILE_ENV_VAR: str(secret)})
    url = f"http://127.0.0.1:{process.port}"  # type: ignore[attr-defined]
    try:
        wait_answering(url, "/health", process)
        wrong = httpx.post(f"{url}/admin/reload", headers={"Authorization": "Bearer x"})
        right = httpx.post(
            f"{url}/admin/reload",
            headers={"Authorization": "Bearer a-token-from-a-mounted-secret"},
        )
        assert wrong.status_code == 401
        assert right.status_code == 422  # authorized; there is no champion to load
    finally:
        process.terminate()
        process.communicate(timeout=30)
