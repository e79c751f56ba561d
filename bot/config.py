"""Settings, read from ZHIBU_* environment variables (and a .env file in the working folder)."""

from __future__ import annotations

import json
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator
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
            ],
        },
        {"type": "click", "name": "帮助", "key": "HELP"},
    ]
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZHIBU_", env_file=".env", extra="ignore")

    data_dir: Path = Path("zhibu-data")
    database_url: str | None = None
    timezone: str = "Asia/Shanghai"

    wechat_app_id: str = ""
    wechat_app_secret: str = ""
    wechat_token: str = ""
    # Set: safe mode (AES). Unset: plaintext mode. Compatible mode works either way.
    wechat_aes_key: str = ""
    wechat_api_base: str = "https://api.weixin.qq.com"

    host: str = "127.0.0.1"
    port: int = 8080

    # Seconds a handler may take before WeChat gets "success" and the reply is pushed later.
    reply_budget: float = 4.0
    # How far a request's timestamp may be from our clock (seconds); guards against replays.
    timestamp_window: int = 300
    max_body_bytes: int = 64 * 1024
    # A message claimed this long ago and still unfinished is treated as orphaned (its process died).
    claim_lease: float = 60.0
    dialog_timeout_minutes: int = 15
    bind_max_failures: int = 5
    bind_lockout_minutes: int = 60

    menu_file: Path | None = None

    @field_validator("wechat_aes_key")
    @classmethod
    def _aes_key_length(cls, value: str) -> str:
        if value and len(value) != 43:
            raise ValueError("ZHIBU_WECHAT_AES_KEY (EncodingAESKey) must be 43 characters")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        ZoneInfo(value)
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def safe_mode(self) -> bool:
        return bool(self.wechat_aes_key)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'zhibu.db').resolve()}"

    def menu(self) -> dict:
        if self.menu_file is None:
            return DEFAULT_MENU
        return json.loads(self.menu_file.read_text(encoding="utf-8"))


class DemoDefaults:
    """Credentials shared by `zhibu demo`, the emulator and the tests; never used with real WeChat."""

    app_id = "wxd0000000000000de"
    app_secret = "demo-secret-0000000000000000000000"
    token = "zhibudemotoken"
    aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

