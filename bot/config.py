"""All bot configuration, from the environment and ``.env`` (see ``.env.example``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from nst_core.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from nst_core.options import EngineSpec, ModelChoice

IdList = Annotated[list[int], NoDecode]


class Settings(BaseSettings):
    """One place for every knob. Secrets are ``SecretStr`` so they never print in logs or reprs."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    bot_token: SecretStr = Field(SecretStr(""), description="from @BotFather; render workers need none")
    bot_api_url: str = "https://api.telegram.org/bot"
    bot_file_url: str = "https://api.telegram.org/file/bot"
    local_bot_api: bool = Field(
        False, description="a local Bot API server (files up to 2 GB, read from disk)"
    )
    poll_timeout_s: int = Field(
        10, ge=0, le=50, description="long polling: how long Telegram holds a request"
    )

    # Webhook mode is used when WEBHOOK_URL is set; long polling otherwise.
    webhook_url: str | None = None
    webhook_listen: str = "0.0.0.0"
    webhook_port: int = 8443
    webhook_secret: SecretStr | None = Field(None, description="required with webhook_url; A-Z a-z 0-9 _ -")

    # Inference pool
    device: str = "auto"
    workers_per_device: int = Field(1, ge=1, le=8)
    queue_limit: int = Field(20, ge=1)
    fast_timeout_s: float = Field(120.0, gt=0)
    hq_time_budget_s: float = Field(300.0, gt=0)
    hq_steps: int = Field(500, ge=1)
    shutdown_grace_s: float = Field(20.0, ge=0)
    engine_factory: str = "bot.worker:load_engine"
    # full until the student is trained to its quality bar (weights/README.md); then auto
    model: ModelChoice = Field(
        "full",
        description="fast mode's network: full, fast (the student), auto: fast on a CPU, full on a GPU",
    )
    decoder_path: Path | None = None
    vgg_path: Path | None = None
    student_path: Path | None = None

    # Scale-out (README "Scaling out"): the pool in this process, or front ends and `atelier-worker`s
    # sharing Redis. Both roles read these same settings.
    backend: Literal["embedded", "redis"] = "embedded"
    redis_url: str = "redis://localhost:6379/0"
    fast_batch_size: int | None = Field(
        None, ge=1, le=64,
        description="fast jobs a render worker runs as one batch; unset: 8 on a GPU, 1 on a CPU",
    )  # fmt: skip
    result_claim_after_s: float = Field(
        30.0, gt=0, description="a result a front end took but did not send goes to another after this"
    )

    # Images
    max_download_bytes: int = DEFAULT_MAX_BYTES
    concurrent_downloads: int = Field(
        4, ge=1, description="pictures fetched and checked at once; the rest wait, and commands do not"
    )
    max_pixels: int = DEFAULT_MAX_PIXELS
    output_max_side: int = Field(1024, ge=64, le=4096)
    hq_max_side: int = Field(512, ge=64, le=2048)
    max_mix_styles: int = Field(4, ge=2, le=10)

    # State and access
    data_dir: Path = Path("data")
    allowed_user_ids: IdList = []
    admin_ids: IdList = []
    flood_messages: int = Field(20, ge=1, description="messages a user may send per flood_window_s")
    flood_window_s: float = 10.0
    progress_edit_interval_s: float = Field(3.0, ge=0.0)
    retention_hours: float = Field(48.0, gt=0, description="how long pictures and results are kept")
    log_level: str = "INFO"

    @field_validator("allowed_user_ids", "admin_ids", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in value.replace(";", ",").split(",") if part.strip()]
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _telegram_secret_charset(cls, value: SecretStr | None) -> SecretStr | None:
        secret = value.get_secret_value() if value else None
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise ValueError("WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @model_validator(mode="after")
    def _webhook_needs_a_secret(self) -> Settings:
        if self.webhook_url and not self.webhook_secret:
            raise ValueError(
                "WEBHOOK_SECRET is required when WEBHOOK_URL is set (anyone could post fake updates)"
            )
        return self

    def engine_spec(self) -> EngineSpec:
        """What every inference worker loads (a plain, picklable value for the worker processes)."""
        return EngineSpec(
            device=self.device,
            model=self.model,
            decoder_path=str(self.decoder_path) if self.decoder_path else None,
            vgg_path=str(self.vgg_path) if self.vgg_path else None,
            student_path=str(self.student_path) if self.student_path else None,
        )

    @property
    def database_path(self) -> Path:
        """Conversations and the job journal (SQLite)."""
        return self.data_dir / "atelier.sqlite3"

    def is_allowed(self, user_id: int) -> bool:
        return not self.allowed_user_ids or user_id in self.allowed_user_ids or user_id in self.admin_ids
