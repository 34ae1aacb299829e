"""The running prediction service as a Dagster resource: start (locally), reload, call."""

import os
import subprocess
import sys
import time
from typing import Any

import dagster as dg
from pydantic import Field

from ml_assets.home import PROJECT_ROOT, ml_assets_home


class ServiceUnavailable(RuntimeError):
    pass


class ServingEndpoint(dg.ConfigurableResource):
    """The prediction service at ``url``; ``start_if_down`` (local profile) starts it."""

    url: str = Field(description="Base URL of the service.")
    start_if_down: bool = Field(
        description="Start `ml-assets serve` when nothing answers (local profile only)."
    )
    admin_token: str | None = Field(
        default=None, description="Bearer token of admin calls; default: serving.settings."
    )
    startup_timeout_s: float = 90.0
    timeout_s: float = 60.0

    def _token(self) -> str:
        from serving.settings import admin_token

        return self.admin_token or admin_token()

    def _client(self):
        import httpx

        return httpx.Client(base_url=self.url, timeout=self.timeout_s)

    def is_up(self) -> bool:
        import httpx

        try:
            with self._client() as client:
                return client.get("/health").status_code == 200
        except httpx.TransportError:
            return False

    def ensure_running(self, log) -> None:
        """Return once the service answers; start it locally, or fail saying what to do."""
        if self.is_up():
            return
        if not self.start_if_down:
            raise ServiceUnavailable(
                f"The prediction service at {self.url} does not answer. In the production "
                "profile the platform does not start it: start it (`ml-assets serve`) where it "
                "runs and check ML_ASSETS_SERVING_URL, then re-execute this run."
            )
        port = self.url.rsplit(":", 1)[-1].split("/")[0]
        folder = ml_assets_home() / "serving"
        folder.mkdir(parents=True, exist_ok=True)
        output = (folder / "service.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "ml_assets.cli", "serve", "--port", port],
            cwd=PROJECT_ROOT, env=dict(os.environ), stdin=subprocess.DEVNULL,
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        (folder / "service.pid").write_text(str(process.pid))
        log.info(f"started the prediction service (pid {process.pid}) on {self.url}")
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServiceUnavailable(
                    f"The prediction service exited with {process.returncode} on start; "
                    f"see {folder / 'service.log'}"
                )
            if self.is_up():
                return
            time.sleep(0.2)
        raise ServiceUnavailable(
            f"The prediction service did not answer within {self.startup_timeout_s:.0f} s; "
            f"see {folder / 'service.log'}"
        )

    def reload(self, version: str | None = None) -> dict[str, Any]:
        """Ask the service to load ``version`` (default: the champion); its answer, or raise."""
        with self._client() as client:
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

    def predict(self, items: list[dict[str, Any]]) -> tuple[dict[str, Any], float]:
        """The service's answer for ``items`` and the seconds it took."""
        with self._client() as client:
            began = time.perf_counter()
            response = client.post("/predict", json=items)
            elapsed = time.perf_counter() - began
        response.raise_for_status()
        return response.json(), elapsed

    def latencies(self, items: list[dict[str, Any]]) -> list[float]:
        """Seconds per single-item request over one connection, as a caller would see them."""
        with self._client() as client:
            client.post("/predict", json=items[0]).raise_for_status()  # the connection is warm
            seconds = []
            for item in items:
                began = time.perf_counter()
                client.post("/predict", json=item).raise_for_status()
                seconds.append(time.perf_counter() - began)
        return seconds
