"""The `tracking:` section of a config: where a run is logged besides its own directory."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_serializer, model_validator


class MlflowConfig(BaseModel):
    """`tracking.mlflow`: log the run to an MLflow tracking store."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    # The tracking URI (http(s)://host:port, databricks, file:path); unset: the
    # MLFLOW_TRACKING_URI environment variable.
    uri: str | None = None
    # The MLflow experiment (created if missing); unset: the config's name.
    experiment: str | None = None


class TrackingConfig(BaseModel):
    """`tracking`: off unless a tracker is named."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    mlflow: MlflowConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_key_means_defaults(cls, data: Any) -> Any:
        # `mlflow:` written without a value asks for MLflow with its defaults.
        if isinstance(data, dict) and "mlflow" in data and data["mlflow"] is None:
            return {**data, "mlflow": {}}
        return data

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: Any) -> dict[str, Any]:
        # Written `tracking: {}` when off, so that reading config.yaml back keeps it off.
        return {k: v for k, v in handler(self).items() if v is not None}
