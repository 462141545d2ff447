"""Secrets for processors and pollers, through Powertools Parameters (cached, refreshable).

Values are read from Secrets Manager at run time, cached for ``max_age`` seconds, and read again
on demand (``refresh=True``) when a target refuses the cached credentials: a rotated secret is
picked up at the first failure, not after the cache runs out. The ingress does not use this
module (its cold-start path stays on the standard library: shared/aws.py).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError
from botocore.config import Config

from shared.errors import ConfigurationError, StoreUnavailable

MAX_AGE_SECONDS = 300
_CONFIG = Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 2, "mode": "standard"})


class Secrets:
    """JSON secrets by name. ``client`` is a boto3 Secrets Manager client (created when first needed)."""

    def __init__(self, client: Any = None, max_age: int = MAX_AGE_SECONDS) -> None:
        self._client = client
        self._provider: SecretsProvider | None = None
        self.max_age = max_age

    @property
    def provider(self) -> SecretsProvider:
        if self._provider is None:
            self._provider = (
                SecretsProvider(boto3_client=self._client) if self._client else SecretsProvider(config=_CONFIG)
            )
        return self._provider

    def get_json(self, secret_id: str, *, refresh: bool = False) -> dict[str, Any]:
        try:
            value = self.provider.get(secret_id, max_age=self.max_age, transform="json", force_fetch=refresh)
        except TransformParameterError as exc:
            raise ConfigurationError(f"secret {secret_id} is not JSON") from exc
        except GetParameterError as exc:
            raise StoreUnavailable(f"secret {secret_id} could not be read") from exc
        if not isinstance(value, dict):
            raise ConfigurationError(f"secret {secret_id} must be a JSON object")
        return value

    def put_json(self, secret_id: str, value: dict[str, Any]) -> None:
        """Write a new version of a secret (a rotated OAuth refresh token) through Powertools
        (PutSecretValue), and keep it cached as the current value."""
        try:
            self.provider.set(secret_id, value)
        except Exception as exc:  # Powertools re-raises the SDK's errors as they come
            raise StoreUnavailable(f"secret {secret_id} could not be written") from exc
        key = self.provider._build_cache_key(name=secret_id, transform="json")
        self.provider.add_to_cache(key, value, self.max_age)
