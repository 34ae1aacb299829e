"""The deployment artifacts (``deploy/``): the image's Dockerfile, the compose file of the
production profile, haproxy's configuration and the Kubernetes values, checked as far as this
machine can: it has the Docker CLI and ``docker-compose`` but no Docker daemon (nothing is built
or started here) and no Kubernetes cluster (the Helm values are parsed, not installed)."""

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from ml_assets.home import PROJECT_ROOT

pytestmark = pytest.mark.integration

DEPLOY = PROJECT_ROOT / "deploy"
SECRETS = {
    "POSTGRES_PASSWORD": "p",
    "RABBITMQ_PASSWORD": "r",
    "AWS_ACCESS_KEY_ID": "a",
    "AWS_SECRET_ACCESS_KEY": "s",
    "DAGSTER_UI_PASSWORD_HASH": "$5$x$y",
}


SAFE_VALUES = ("${", '"${', "/run/secrets", "{", "[", "false", "true")
"""What a secret's setting may be in a committed file: a reference, never the secret."""


def _compose_config(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    secrets = DEPLOY / "secrets"
    made = not secrets.exists()
    if made:  # the serving token's file: never in git, made by the operator
        secrets.mkdir()
        (secrets / "serving_token").write_text("token")
    try:
        return subprocess.run(
            ["docker-compose", "-f", str(DEPLOY / "compose.yaml"), "config"],
            env={k: v for k, v in os.environ.items() if k not in SECRETS} | env,
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )  # fmt: skip
    finally:
        if made:
            (secrets / "serving_token").unlink()
            secrets.rmdir()


def test_the_compose_file_is_valid_and_takes_every_secret_from_outside(tmp_path: Path) -> None:
    done = _compose_config(SECRETS, tmp_path)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert {"postgres", "rabbitmq", "s3", "mlflow", "webserver", "daemon", "worker", "flights",
            "taxi", "haproxy"} <= set(config["services"])  # fmt: skip
    assert config["services"]["worker"]["environment"]["ML_ASSETS_EXECUTOR"] == "celery"
    missing = _compose_config({k: v for k, v in SECRETS.items() if k != "POSTGRES_PASSWORD"},
                              tmp_path)  # fmt: skip
    assert missing.returncode != 0 and "POSTGRES_PASSWORD" in missing.stderr


def test_the_image_is_multi_stage_non_root_and_installed_from_the_lock_file() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, flags=re.M)) >= 2
    assert re.search(r"^USER (?!root)\S+", dockerfile, flags=re.M)
    assert "uv sync --locked" in dockerfile


@pytest.mark.parametrize("path", ["compose.yaml", "haproxy.cfg", "helm/values.yaml",
                                  "helm/worker.yaml", "Dockerfile"])  # fmt: skip
def test_no_secret_is_written_in_the_artifacts(path: str) -> None:
    text = (DEPLOY / path).read_text()
    for line in text.splitlines():
        value = re.search(
            r"(?i)(?<![{\w])(\w*(?:password|secret_access_key|token)\w*)\s*[:=]\s*(\S+)", line
        )
        if value and not line.lstrip().startswith("#"):
            assert value.group(2).startswith(SAFE_VALUES), line
    assert not re.search(r"://[^/\s:@]+:[^$/\s@{]+@", text), "credentials in a URL"


def test_the_helm_values_name_the_charts_settings() -> None:
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["dagster-user-deployments"]["deployments"][0]["dagsterApiGrpcArgs"] == [
        "-m", "ml_assets.definitions"
    ]  # fmt: skip
    worker = yaml.safe_load((DEPLOY / "helm" / "worker.yaml").read_text())
    assert worker["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]
