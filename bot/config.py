"""Settings, read from ZHIBU_* environment variables (and a .env file in the working folder)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, time
from pathlib import Path
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The menu pushed by `zhibu menu push` when ZHIBU_MENU_FILE is not set. CLICK keys are what
# feature routers listen for; WeChat allows 3 top buttons with up to 5 sub-buttons each.
DEFAULT_MENU: dict = {
    "button": [
        {
            "name": "我的",
            "sub_button": [
                {"type": "click", "name": "我的信息", "key": "ME"},
                {"type": "click", "name": "绑定身份", "key": "BIND"},
                {"type": "click", "name": "收到通知", "key": "ACK"},
                {"type": "click", "name": "开会时间", "key": "MEETINGS"},
                {"type": "click", "name": "上报情况", "key": "CARE_REPORT"},
            ],
        },
        {"type": "click", "name": "签到", "key": "CHECKIN"},
        # 帮助 shares a button with study: WeChat allows only three top buttons, and 签到 must stay one tap.
        {
            "name": "学习·帮助",
            "sub_button": [
                {"type": "click", "name": "本周学习", "key": "STUDY"},
                {"type": "click", "name": "我的学时", "key": "STUDY_MINE"},
                {"type": "click", "name": "使用帮助", "key": "HELP"},
            ],
        },
    ]
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZHIBU_", env_file=".env", extra="ignore")

    data_dir: Path = Path("zhibu-data")
    # Curated content (Q&A, documents, study items); None: the content/ folder shipped with the package.
    content_dir: Path | None = None
    # Where the built Q&A index is kept between starts (content/index_cache.py); None: ZHIBU_DATA_DIR/cache.
    cache_dir: Path | None = None
    database_url: str | None = None
    # PostgreSQL connections each process keeps open. Every transaction waits for one of these instead of
    # opening a connection of its own (setting one up costs more than a message's queries), so it bounds
    # how many transactions a process runs at once; keep workers × this under the server's max_connections.
    database_pool_size: int = Field(default=30, ge=2)
    timezone: str = "Asia/Shanghai"

    wechat_app_id: str = ""
    wechat_app_secret: str = ""
    wechat_token: str = ""
    # Set: safe mode (AES). Unset: plaintext mode. Compatible mode works either way.
    wechat_aes_key: str = ""
    wechat_api_base: str = "https://api.weixin.qq.com"

    host: str = "127.0.0.1"
    port: int = 8080
    # The address members' phones reach this service at (the HTTPS proxy in front of it), for links in
    # messages, e.g. https://zhibu.example.gov.cn. Empty: http://HOST:PORT, which only works on this machine.
    public_url: str = ""
    # Keys that sign members' page links, oldest first: the last signs, all verify (append a new one to rotate,
    # drop an old one once its links have expired). Empty: one kept in ZHIBU_DATA_DIR/link-key.
    link_keys: list[str] = Field(default_factory=list)
    # Days a link in a message keeps opening its page.
    link_days: int = Field(default=60, ge=1)

    # Seconds a handler may take before WeChat gets "success" and the reply is pushed later.
    reply_budget: float = 4.0
    # How far a request's timestamp may be from our clock (seconds); guards against replays.
    timestamp_window: int = 300
    max_body_bytes: int = 64 * 1024
    # A message claimed this long ago and still unfinished is treated as orphaned (its process died).
    claim_lease: float = 60.0
    dialog_timeout_minutes: int = 15

    menu_file: Path | None = None

    # Periodic jobs (bot/scheduler.py). A job's schedule by its name, replacing the declared one, e.g.
    # '{"notices.report": {"trigger": "cron", "hour": 8}}'; a name no feature declares stops the start.
    job_schedules: dict[str, dict] = Field(default_factory=dict)
    # A run missed while the service was down still happens, once, if it is at most this many seconds late.
    job_misfire_grace: int = Field(default=6 * 3600, ge=1)
    # Seconds between a waiting process's attempts to take over the scheduler (and the leader's health checks).
    scheduler_retry_interval: float = Field(default=5.0, gt=0)
    # False: this process never runs jobs (another one does); `zhibu jobs run` still works.
    scheduler_enabled: bool = True

    # Template message ids by kind of message (notice, reminder…), e.g. '{"notice": "ID", "default": "ID"}'.
    # Members outside the 48-hour customer-service window can only be reached through these.
    wechat_templates: dict[str, str] = Field(default_factory=dict)
    # Each template's own field names, by template id: our fields (title, content, time, place, sender, remark…)
    # → the template's ("first", "keyword1", "thing2"…), e.g. '{"ID": {"title": "first", "content": "keyword1"}}'.
    # A template listed here gets only the fields it names; one not listed gets our names as they are.
    wechat_template_fields: dict[str, dict[str, str]] = Field(default_factory=dict)

    # The delivery engine (bot/outbox.py). Rates are per process.
    outbox_enabled: bool = True  # run its workers in this process (tests deliver with run_until_idle instead)
    outbox_rate: float = 500.0  # messages per second; 0 means no limit
    outbox_burst: int = 50  # messages that may go at once after an idle spell
    outbox_concurrency: int = 32  # API calls in flight
    outbox_batch: int = 500  # rows claimed (and their outcomes recorded) per transaction
    outbox_batches_in_flight: int = 4
    outbox_poll_interval: float = 1.0  # seconds between looks at the queue when nothing woke the engine
    # A worker holds a claimed row this long; after that the row is taken to belong to a dead process.
    outbox_lease: float = 300.0
    outbox_recover_interval: float = 60.0
    outbox_max_attempts: int = 6
    outbox_backoff: float = 30.0  # the first retry's delay in seconds; it doubles with each attempt
    outbox_backoff_max: float = 3600.0
    # After the daily quota runs out (45009) or WeChat rejects our credentials, wait this long before trying again.
    outbox_pause: float = 600.0
    # No pushes in these local hours ("HH:MM") unless urgent; equal times switch quiet hours off.
    quiet_hours_start: str = "21:00"
    quiet_hours_end: str = "07:00"

    # Speech recognition of members' voice messages (bot/speech): WeChat no longer sends its own transcript.
    # The engine: "none" (voice is answered with "please type"), "funasr" (FunASR's runtime server, offline
    # mode), "openai" (any server with OpenAI's /v1/audio/transcriptions: whisper.cpp, vLLM…), "baidu" (Baidu AI
    # Cloud 短语音识别).
    speech_engine: Literal["none", "funasr", "openai", "baidu"] = "none"
    # funasr: the server's ws:// or wss:// address, e.g. ws://127.0.0.1:10095. openai: the server's base
    # address, e.g. http://127.0.0.1:8178. baidu: empty for https://vop.baidu.com/server_api, or another
    # recognition address of Baidu's.
    speech_url: str = ""
    # openai: the request path under speech_url (whisper.cpp answers on /inference unless started with
    # --inference-path /v1/audio/transcriptions).
    speech_path: str = "/v1/audio/transcriptions"
    # openai: the bearer key, if the server wants one. baidu: the application's API Key.
    speech_api_key: str = ""
    # baidu: the application's Secret Key.
    speech_secret_key: str = ""
    # openai: the model name the server expects (OpenAI: whisper-1; whisper.cpp ignores it; vLLM: the model it
    # serves). baidu: the dev_pid, empty for 1537 (Mandarin).
    speech_model: str = ""
    # Seconds one voice message's recognition may take, connecting included, before it counts as failed.
    speech_timeout: float = Field(default=10.0, gt=0)
    # A transcript the engine itself rates less sure than this (0..1) counts as not heard. Engines that give no
    # rating (all three here) are taken at their word.
    speech_min_confidence: float = Field(default=0.5, ge=0, le=1)
    # funasr over wss://: verify the server's certificate. The FunASR image's own certificate is self-signed, so
    # either serve plain ws:// (run_server.sh --certfile 0) on the same machine or LAN, or set this to false.
    speech_verify_tls: bool = True

    @field_validator("wechat_aes_key")
    @classmethod
    def _aes_key_length(cls, value: str) -> str:
        if value and len(value) != 43:
            raise ValueError("ZHIBU_WECHAT_AES_KEY (EncodingAESKey) must be 43 characters")
        return value

    @field_validator("quiet_hours_start", "quiet_hours_end")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        # Kept as zero-padded "HH:MM" text, which also compares correctly as a string.
        try:
            hours, minutes = value.strip().split(":")
            return time(int(hours), int(minutes)).strftime("%H:%M")
        except ValueError:
            raise ValueError(f"quiet hours are given as HH:MM, not {value!r}") from None

    @model_validator(mode="after")
    def _speech_engine_configured(self) -> Settings:
        # An engine without its address or keys would fail on every voice message; better to stop the start.
        engine, url = self.speech_engine, self.speech_url.strip()
        if engine == "funasr" and not url.startswith(("ws://", "wss://")):
            raise ValueError("语音识别用 FunASR 时要设置 ZHIBU_SPEECH_URL（ws:// 或 wss:// 开头的地址）"
                             f" (ZHIBU_SPEECH_ENGINE=funasr needs ZHIBU_SPEECH_URL=ws://host:port, not {url!r})")
        if engine == "openai" and not url.startswith(("http://", "https://")):
            raise ValueError("语音识别用 OpenAI 兼容接口时要设置 ZHIBU_SPEECH_URL（http:// 或 https:// 开头的地址）"
                             f" (ZHIBU_SPEECH_ENGINE=openai needs ZHIBU_SPEECH_URL=http://host:port, not {url!r})")
        if engine == "baidu":
            if not (self.speech_api_key and self.speech_secret_key):
                raise ValueError("语音识别用百度时要设置 ZHIBU_SPEECH_API_KEY 和 ZHIBU_SPEECH_SECRET_KEY"
                                 " (ZHIBU_SPEECH_ENGINE=baidu needs the application's API Key and Secret Key)")
            if url and not url.startswith(("http://", "https://")):
                raise ValueError(f"ZHIBU_SPEECH_URL 要以 https:// 开头 (a Baidu recognition address, not {url!r})")
            if self.speech_model and not self.speech_model.isdigit():
                raise ValueError("百度的 ZHIBU_SPEECH_MODEL 是识别模型编号 dev_pid，如 1537"
                                 f" (ZHIBU_SPEECH_MODEL for baidu is a dev_pid like 1537, not {self.speech_model!r})")
        return self

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        ZoneInfo(value)
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local(self, moment: datetime) -> datetime:
        """moment in the configured zone: what people read."""
        return moment.astimezone(self.zone)

    @property
    def effective_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def safe_mode(self) -> bool:
        return bool(self.wechat_aes_key)

    @property
    def effective_cache_dir(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.data_dir / "cache"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'zhibu.db').resolve()}"

    def menu(self) -> dict:
        if self.menu_file is None:
            return DEFAULT_MENU
        return json.loads(self.menu_file.read_text(encoding="utf-8"))


SettingsT = TypeVar("SettingsT", bound=Settings)


class Configs:
    """The core settings and each feature's typed settings, built from them once.

    A feature declares its settings as a subclass of Settings (`class MeetingSettings(Settings)` with its own
    fields, read from the same ZHIBU_* variables): its handlers and jobs then get one object that has both
    the core (the time zone, quiet hours) and its own fields, while bot/config.py knows nothing of them.
    `overrides` sets feature fields by name (the tests' way; a deployment uses the environment); a name no
    settings class has is refused by `check`, so a typo cannot pass silently.
    """

    def __init__(self, core: Settings, overrides: Mapping[str, Any] | None = None,
                 env_file: str | Path | None = ".env") -> None:
        self.core = core
        self.overrides = dict(overrides or {})
        self.env_file = env_file
        self._built: dict[type, Settings] = {type(core): core}

    def of(self, kind: type[SettingsT] | None) -> SettingsT:
        """The settings of type kind (None: the core), built on first use."""
        if kind is None:
            return self.core  # type: ignore[return-value]
        found = self._built.get(kind)
        if found is None:
            own = {name: value for name, value in self.overrides.items()
                   if name in kind.model_fields and name not in Settings.model_fields}
            # The core's values are given explicitly, so a feature sees exactly the core this process runs with.
            found = self._built[kind] = kind(_env_file=self.env_file, **self.core.model_dump(), **own)
        return found  # type: ignore[return-value]

    def check(self, kinds: Iterable[type[Settings] | None]) -> None:
        """Build every feature's settings now (a bad value stops the start) and refuse unknown overrides."""
        kinds = [kind for kind in kinds if kind is not None]
        for kind in kinds:
            self.of(kind)
        known = set(Settings.model_fields).union(*(kind.model_fields for kind in kinds))
        unknown = sorted(set(self.overrides) - known)
        if unknown:
            raise ValueError(f"no feature has the settings {', '.join(unknown)}")


class DemoDefaults:
    """Credentials shared by `zhibu demo`, the emulator and the tests; never used with real WeChat."""

    app_id = "wxd0000000000000de"
    app_secret = "demo-secret-0000000000000000000000"
    token = "zhibudemotoken"
    aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

