"""The design's ceiling: the webhook's guarantees written as lean as Python and aiohttp allow, for bench/webhook.py.

It does for each 我的 what the full path does, and nothing else:
- the signature (plaintext: the query's; safe mode: msg_signature over the ciphertext, then AES with wechatpy's
  WeChatCrypto, as the full path) and the timestamp window;
- the XML read with the standard library (a body declaring a DTD is refused);
- the signed query recorded with its body's digest and the message claimed by its MsgId, in one transaction
  committed before anything is handled (a copy finds the claim and gets the stored reply);
- the sender from a dictionary filled at start-up (no invalidation: nothing changes members here);
- the reply stored with the message in a second transaction, then rendered (and encrypted).

sqlite3 runs on the event loop (one connection, WAL, synchronous=NORMAL: the full path's settings), with no
ORM, no group commit, no routing, no outbox and no dialog. What it costs per message is what the guarantees cost;
the distance from it to the full path is what the machinery costs (the issue's "lean" measurement).

    python bench/lean_server.py --port 8090 --database /tmp/lean.db [--safe]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import re
import sqlite3
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from bot.config import DemoDefaults  # noqa: E402

MEMBERS = 200  # bench/webhook.py's USERS: bench-0 … bench-199
WINDOW = 300  # seconds a timestamp may be off
_DTD = re.compile(r"<!(DOCTYPE|ENTITY)", re.IGNORECASE)
_REPLY = ("<xml><ToUserName><![CDATA[{to}]]></ToUserName><FromUserName><![CDATA[{source}]]></FromUserName>"
          "<CreateTime>{time}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
          "<Content><![CDATA[{content}]]></Content></xml>")
SCHEMA = """
CREATE TABLE IF NOT EXISTS signed (key TEXT PRIMARY KEY, digest TEXT NOT NULL, seen_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS inbound (id INTEGER PRIMARY KEY, dedup_key TEXT NOT NULL UNIQUE, openid TEXT NOT NULL,
    payload TEXT NOT NULL, status TEXT NOT NULL, reply TEXT, received_at INTEGER NOT NULL, finished_at INTEGER);
CREATE TABLE IF NOT EXISTS member (openid TEXT PRIMARY KEY, name TEXT, org_path TEXT, role TEXT, category TEXT);
"""


def open_database(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.executescript(SCHEMA)
    connection.executemany("INSERT OR IGNORE INTO member VALUES (?, ?, ?, '党员', '正式党员')",
                           [(f"bench-{n}", f"党员{n:03d}", f"基准县委/基准镇党委/第{n % 20}村党支部")
                            for n in range(MEMBERS)])
    return connection


def build(database: str, safe: bool) -> web.Application:
    connection = open_database(database)
    senders = {openid: (name, org, role, category)
               for openid, name, org, role, category in connection.execute("SELECT * FROM member")}
    token = DemoDefaults.token
    crypto = None
    if safe:
        from wechatpy.crypto import WeChatCrypto
        crypto = WeChatCrypto(token, DemoDefaults.aes_key, DemoDefaults.app_id)

    def refuse(status: int, reason: str) -> web.Response:
        return web.Response(status=status, text=reason)

    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()
        query = request.query
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > WINDOW:
            return refuse(403, "timestamp")
        body = raw.decode("utf-8")
        if crypto is not None:
            try:
                plaintext = crypto.decrypt_message(body, query.get("msg_signature", ""), timestamp, nonce)
            except Exception:  # noqa: BLE001 (wechatpy raises several kinds)
                return refuse(403, "signature")
            signature = query.get("msg_signature", "")
        else:
            signature = query.get("signature", "")
            expected = hashlib.sha1("".join(sorted((token, timestamp, nonce))).encode()).hexdigest()
            if not hmac.compare_digest(expected, signature):
                return refuse(403, "signature")
            plaintext = body
        if _DTD.search(plaintext):
            return refuse(400, "DTD")
        try:
            fields = {child.tag: child.text or "" for child in ElementTree.fromstring(plaintext)}
        except ElementTree.ParseError:
            return refuse(400, "XML")
        openid, msg_id, account = fields.get("FromUserName", ""), fields.get("MsgId", ""), fields.get("ToUserName", "")
        key = hashlib.sha256(f"{timestamp}\x1f{nonce}\x1f{signature}".encode()).hexdigest()
        digest = hashlib.sha256(raw).hexdigest()
        now = int(time.time())
        # Recorded and claimed, committed before handling.
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute("INSERT INTO signed VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (key, digest, now))
            if connection.execute("SELECT digest FROM signed WHERE key = ?", (key,)).fetchone()[0] != digest:
                connection.execute("ROLLBACK")
                return refuse(403, "replayed")
            claimed = connection.execute(
                "INSERT INTO inbound (dedup_key, openid, payload, status, received_at)"
                " VALUES (?, ?, ?, 'processing', ?) ON CONFLICT DO NOTHING RETURNING id",
                (f"msg:{msg_id}", openid, plaintext, now)).fetchone()
            stored = None if claimed else connection.execute(
                "SELECT reply FROM inbound WHERE dedup_key = ?", (f"msg:{msg_id}",)).fetchone()
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        if claimed is None:
            reply = stored[0] if stored and stored[0] else None
        else:
            sender = senders.get(openid)
            reply = ("请先绑定身份。" if sender is None else
                     f"姓名：{sender[0]}\n组织：{sender[1]}\n职务：{sender[2]}\n类别：{sender[3]}\n提醒：打开\n"
                     "信息有误请联系支部书记。")
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("UPDATE inbound SET status = 'done', reply = ?, finished_at = ? WHERE id = ?",
                               (reply, now, claimed[0]))
            connection.execute("COMMIT")
        if reply is None:
            return web.Response(text="success")
        rendered = _REPLY.format(to=openid, source=account, time=now, content=reply.replace("]]>", "]]]]><![CDATA[>"))
        if crypto is not None:
            rendered = crypto.encrypt_message(rendered, nonce, timestamp)
        return web.Response(text=rendered, content_type="application/xml")

    app = web.Application()
    app.router.add_post("/wechat", handle)
    app.router.add_get("/healthz", lambda request: web.json_response({"status": "ok"}))
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--safe", action="store_true")
    arguments = parser.parse_args()
    web.run_app(build(arguments.database, arguments.safe), host="127.0.0.1", port=arguments.port, access_log=None,
                print=None)
