"""The application keys the composition root (bot/app.py) fills and the web layer reads: defined below both,
so that a page never imports the composition root."""

from __future__ import annotations

from aiohttp import web

from bot.config import Configs
from bot.wechat.client import WeChatClient

# Each feature's typed settings (bot.config.Configs).
CONFIGS = web.AppKey("configs", Configs)

# What features provide by name (Runtime.provide), for pages as for handlers.
PROVIDED = web.AppKey("provided", dict)
# The platform's outbound client (for a QR code); set once the app has started.
CLIENT = web.AppKey("wechat_client", WeChatClient)
