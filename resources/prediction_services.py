"""The pipelines' running prediction services as a Dagster resource: start (locally), reload,
call. One service per pipeline, each at its own URL; in the production profile that URL is a
load balancer's and the service's replicas are named too, so that a reload reaches each of
them in turn and their figures can be summed."""

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.home import PROJECT_ROOT, ml_assets_home
from resources.balancer import BALANCER_SOCKET_ENV_VAR, Balancer
from serving.settings import serving_url, url_env_var


class ServiceUnavailable(RuntimeError):
    pass


def services_folder() -> Path:
    """Where the platform keeps the services it starts: ``<pipeline>.pid`` and its log."""
    return ml_assets_home() / "serving"


def started_services() -> list[int]:
    """The process groups of the prediction services the platform started on this home
    (``<pipeline>.pid``) that still run one."""
    groups = []
    for pid_file in services_folder().glob("*.pid"):
        try:
            pid = int(pid_file.read_text())
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):  # gone, or its file still being written
            continue
        if b"serve" in argv and pid_file.stem.encode() in argv:  # not a pid reused since
            groups.append(pid)
    return groups


def replicas_env_var(pipeline: str) -> str:
    """The variable that names the replicas behind ``pipeline``'s (load-balanced) URL."""
    return f"ML_ASSETS_{pipeline.upper()}_SERVING_REPLICAS"


def serving_replicas(pipeline: str) -> list[str]:
    """``$ML_ASSETS_<PIPELINE>_SERVING_REPLICAS``: the replicas' base URLs, comma-separated;
    none when unset (the URL is the one service)."""
    value = os.environ.get(replicas_env_var(pipeline), "")
    return [url.strip() for url in value.split(",") if url.strip()]


class PredictionServices(dg.ConfigurableResource):
    """Where each pipeline's prediction service answers (``urls`` by pipeline name) and, where
    the URL is a load balancer's, its replicas (``replicas`` by pipeline name)."""

    urls: dict[str, str] = Field(description="Base URL of each pipeline's service.")
    replicas: dict[str, list[str]] = Field(
        default={}, description="Base URLs of the replicas behind a pipeline's URL."
    )
    balancer_socket: str | None = Field(
        default=None,
        description="haproxy's admin socket: replicas are drained there before they reload.",
    )
    admin_token: str | None = Field(
        default=None, description="Bearer token of admin calls; default: serving.settings."
    )
    startup_timeout_s: float = 90.0
    timeout_s: float = 60.0

    def endpoint(self, pipeline: str) -> "ServingEndpoint":
        from serving.settings import admin_token, is_local

        url = self.urls[pipeline]
        replicas = tuple(self.replicas.get(pipeline, ()))
        return ServingEndpoint(
            pipeline=pipeline,
            url=url,
            start_if_down=is_local(url) and not replicas,
            token=self.admin_token or admin_token(),
            startup_timeout_s=self.startup_timeout_s,
            timeout_s=self.timeout_s,
            replicas=replicas,
            balancer_socket=self.balancer_socket,
        )


def prediction_services(pipelines: Sequence[PipelineDeclaration]) -> PredictionServices:
    """The services of ``pipelines`` as the environment places them (``serving_url``,
    ``serving_replicas``, ``$ML_ASSETS_HAPROXY_SOCKET``)."""
    return PredictionServices(
        urls={p.name: serving_url(p.name, p.serving.port) for p in pipelines},
        replicas={p.name: urls for p in pipelines if (urls := serving_replicas(p.name))},
        balancer_socket=os.environ.get(BALANCER_SOCKET_ENV_VAR) or None,
    )


@dataclass(frozen=True)
class ServingEndpoint:
    """The prediction service of ``pipeline`` at ``url``; ``start_if_down`` (a loopback URL:
    the local profile) starts it when nothing answers. With ``replicas`` (the services behind
    a load balancer at ``url``), reloads reach each replica in turn, drained first at the
    balancer's ``balancer_socket`` if given."""

    pipeline: str
    url: str
    start_if_down: bool
    token: str
    startup_timeout_s: float
    timeout_s: float
    replicas: tuple[str, ...] = ()
    balancer_socket: str | None = None

    def _token(self) -> str:
        return self.token

    def _client(self, url: str | None = None):
        import httpx

        return httpx.Client(base_url=url or self.url, timeout=self.timeout_s)

    def _health(self, url: str | None = None) -> dict[str, Any] | None:
        """The service's (or one replica's) ``/health`` answer; None when nothing answers."""
        import httpx

        try:
            with self._client(url) as client:
                response = client.get("/health")
        except httpx.TransportError:
            return None
        if response.status_code != 200:
            return None
        try:
            return response.json()
        except ValueError:
            return {}

    def is_up(self) -> bool:
        return self._health() is not None

    def ensure_running(self, log) -> None:
        """Return once the pipeline's service answers at the URL; start it locally, or fail
        saying what to do. A service of another pipeline at the URL (two pipelines pointed at
        one port), or locally one of another home, is refused before anything is changed."""
        if not self.is_up():
            if not self.start_if_down:
                raise ServiceUnavailable(
                    f"The {self.pipeline} prediction service at {self.url} does not answer. In "
                    "the production profile the platform does not start it: start it "
                    f"(`ml-assets serve {self.pipeline}`) where it runs and check "
                    f"{url_env_var(self.pipeline)}, then re-execute this run."
                )
            self._start(log)
        serves = (self._health() or {}).get("pipeline")
        if serves != self.pipeline:
            raise ServiceUnavailable(
                f"The service at {self.url} is the {serves} prediction service, not the "
                f"{self.pipeline} one: point {url_env_var(self.pipeline)} at the {self.pipeline} "
                "service (each pipeline has its own), then re-execute this run."
            )
        self._refuse_another_homes()

    def _refuse_another_homes(self) -> None:
        """Where the platform starts the service itself (locally), raise if the service at
        the URL belongs to another home: a platform reuses, reloads and reports only its own."""
        health = self._health() if self.start_if_down else None
        if health is None:  # not started here, or nothing answers (the caller says so)
            return
        ours, theirs = str(ml_assets_home()), health.get("home")
        if theirs == ours:
            return
        whose = (
            f"belongs to the home {theirs}, not to this one ({ours}): stop that home's "
            f"`ml-assets dev` (or `kill -TERM -$(cat {theirs}/serving/{self.pipeline}.pid)`)"
            if theirs
            else "does not say which home it belongs to (an older version started it), so it "
            f"is not taken for this one's ({ours}): stop it"
        )
        raise ServiceUnavailable(
            f"The {self.pipeline} prediction service at {self.url} {whose}, or point "
            f"{url_env_var(self.pipeline)} at a free port; then re-execute this run."
        )

    def _start(self, log) -> None:
        port = self.url.rsplit(":", 1)[-1].split("/")[0]
        folder = services_folder()
        folder.mkdir(parents=True, exist_ok=True)
        log_file = folder / f"{self.pipeline}.log"
        with log_file.open("ab") as output:  # the service keeps its own copy of the file
            process = subprocess.Popen(  # noqa: S603 (our own argv, no shell)
                [sys.executable, "-m", "ml_assets.cli", "serve", self.pipeline, "--port", port],
                cwd=PROJECT_ROOT, env=dict(os.environ), stdin=subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        (folder / f"{self.pipeline}.pid").write_text(str(process.pid))
        log.info(
            f"started the {self.pipeline} prediction service (pid {process.pid}) on {self.url}"
        )
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServiceUnavailable(
                    f"The prediction service exited with {process.returncode} on start; "
                    f"see {log_file}"
                )
            if self.is_up():
                return
            time.sleep(0.2)
        raise ServiceUnavailable(
            f"The prediction service did not answer within {self.startup_timeout_s:.0f} s; "
            f"see {log_file}"
        )

    def reload(self, version: str | None = None) -> dict[str, Any]:
        """Ask the service to load ``version`` (default: the champion); its answer, or raise.
        With replicas, each one that answers reloads in turn, drained first; a replica that
        is down is left out (it loads what the registry says when it starts again)."""
        if not self.replicas:
            self._refuse_another_homes()
            return self._reload_at(self.url, version)
        balancer = Balancer(self.balancer_socket) if self.balancer_socket else None
        answers = {}
        for replica in self.replicas:
            if self._health(replica) is None:
                continue
            with balancer.drained(replica) if balancer else contextlib.nullcontext():
                answers[replica] = self._reload_at(replica, version)
        if not answers:
            raise ServiceUnavailable(f"no replica of the {self.pipeline} service answers")
        loaded = {url: _versions(answer) for url, answer in answers.items()}
        if len(set(loaded.values())) > 1:
            raise ServiceUnavailable(f"the replicas loaded different versions: {loaded}")
        return list(answers.values())[-1]

    def _reload_at(self, url: str, version: str | None) -> dict[str, Any]:
        with self._client(url) as client:
            response = client.post(
                "/admin/reload",
                json={"version": version},
                headers={"Authorization": f"Bearer {self._token()}"},
            )
        if response.status_code != 200:
            raise ServiceUnavailable(
                f"reload refused ({response.status_code}): {response.json().get('detail')}"
            )
        return response.json()

    def unload(self) -> None:
        """Have the service (each replica that answers) serve no model, as the registry says
        when it names no champion."""
        if not self.replicas:
            self._refuse_another_homes()
        for url in self.replicas or [self.url]:
            if self.replicas and self._health(url) is None:
                continue
            with self._client(url) as client:
                response = client.post(
                    "/admin/unload", headers={"Authorization": f"Bearer {self._token()}"}
                )
            if response.status_code != 200:
                raise ServiceUnavailable(
                    f"unload refused ({response.status_code}): {response.json().get('detail')}"
                )

    def reload_champion(self, version: str) -> dict[str, Any]:
        """Have the service load the champion, which the registry now says is ``version``;
        its answer, or raise if it loaded anything else."""
        served = self.reload()
        if served.get("version") != version:
            raise ServiceUnavailable(f"the service loaded {served.get('version')}, not {version}")
        return served

    def describe(self, url: str | None = None) -> dict[str, Any] | None:
        """The service's (or one replica's) ``GET /model``: the live model and its rollout;
        None when no model is live or nothing answers."""
        import httpx

        try:
            with self._client(url) as client:
                response = client.get("/model")
        except httpx.TransportError:
            return None
        return response.json() if response.status_code == 200 else None

    def describe_each(self) -> list[dict[str, Any] | None]:
        """``describe`` of each replica, or of the one service when there are none."""
        return [self.describe(url) for url in self.replicas] or [self.describe()]

    def _headers(self, version: str | None) -> dict[str, str]:
        """Headers that have ``version`` (a loaded one) answer, or none: the service decides."""
        if version is None:
            return {}
        return {"x-model-version": version, "Authorization": f"Bearer {self._token()}"}

    def predict(
        self, items: list[dict[str, Any]], version: str | None = None
    ) -> tuple[dict[str, Any], float]:
        """The service's answer for ``items`` (from the loaded ``version``, if given) and the
        seconds it took."""
        with self._client() as client:
            began = time.perf_counter()
            response = client.post("/predict", json=items, headers=self._headers(version))
            elapsed = time.perf_counter() - began
        response.raise_for_status()
        return response.json(), elapsed

    def latencies(self, items: list[dict[str, Any]], version: str | None = None) -> list[float]:
        """Seconds per single-item request over one connection, as a caller would see them."""
        headers = self._headers(version)
        with self._client() as client:
            # the connection is warm
            client.post("/predict", json=items[0], headers=headers).raise_for_status()
            seconds = []
            for item in items:
                began = time.perf_counter()
                client.post("/predict", json=item, headers=headers).raise_for_status()
                seconds.append(time.perf_counter() - began)
        return seconds


def _versions(answer: dict[str, Any]) -> tuple[Any, Any]:
    """The champion and challenger versions a reload's answer says are loaded."""
    challenger = (answer.get("rollout") or {}).get("challenger") or {}
    return answer.get("version"), challenger.get("version")
