"""Where the platform's alerts go: a Slack-compatible incoming webhook.

The URL is a secret (a Slack webhook URL carries its token): it comes from
``$ML_ASSETS_ALERT_WEBHOOK_URL`` through ``dg.EnvVar``, so Dagster shows the variable's name,
never its value; no error raised here names it, and httpx's own log line of each request
(logger ``httpx``, INFO) shows it redacted.
"""

import logging
import os
from typing import Any

import dagster as dg
from pydantic import Field

ALERT_WEBHOOK_ENV_VAR = "ML_ASSETS_ALERT_WEBHOOK_URL"


REDACTED = "<alert webhook URL>"


class _Redact(logging.Filter):
    """Replaces the webhook URLs in the records of the logger it filters."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            for secret in sorted(self.secrets, key=len, reverse=True):
                message = message.replace(secret, REDACTED)
            record.msg, record.args = message, ()
        return True


_REDACT = _Redact()


class AlertWebhookError(Exception):
    """A post the webhook did not accept; the message never contains the URL."""


class AlertWebhook(dg.ConfigurableResource):
    """A webhook that takes one JSON message per POST (Slack's incoming webhooks, or any receiver
    of the same shape). Without ``url`` nothing is posted: the alerts sensor logs its alerts."""

    url: str | None = Field(default=None, description="The webhook's URL (a secret).")
    timeout_s: float = Field(default=10, description="Seconds to wait for the webhook's answer.")

    @property
    def configured(self) -> bool:
        return bool(self.url)

    def post(self, message: dict[str, Any]) -> None:
        """POST ``message`` as JSON; raise ``AlertWebhookError`` unless the answer is a 2xx."""
        import httpx

        if not self.url:
            raise AlertWebhookError("no alert webhook URL is configured")
        try:
            _REDACT.secrets.update({self.url, str(httpx.URL(self.url))})
            httpx_logger = logging.getLogger("httpx")
            if _REDACT not in httpx_logger.filters:
                httpx_logger.addFilter(_REDACT)
            response = httpx.post(self.url, json=message, timeout=self.timeout_s)
        except (httpx.HTTPError, httpx.InvalidURL) as error:  # may name the URL: keep the kind
            raise AlertWebhookError(
                f"the webhook did not answer ({type(error).__name__})"
            ) from None
        if not response.is_success:
            raise AlertWebhookError(f"the webhook answered {response.status_code}")


def alert_webhook_url() -> str | None:
    """``dg.EnvVar`` of ``$ML_ASSETS_ALERT_WEBHOOK_URL`` when it is set (resolved where the
    resource is used, shown by name), else None."""
    return dg.EnvVar(ALERT_WEBHOOK_ENV_VAR) if os.environ.get(ALERT_WEBHOOK_ENV_VAR) else None
