"""`zhibu chat`: a terminal WeChat user talking to the emulator, which forwards to the webhook.

Plain lines are text messages; lines starting with "/" are the other things a WeChat user can do.
Pushed (customer-service and template) messages appear as they arrive.
"""

from __future__ import annotations

import asyncio
import base64
import sys
from pathlib import Path

import aiohttp

CHAT_HELP = """\
直接输入文字 = 发一条文字消息。其他操作：
  /语音 文字        发语音，带微信的语音识别结果（旧的微信）  (/voice)
  /语音 @文件       发一段录音（.amr 等），不带识别结果，由服务自己听（现在的微信）
  /位置 纬度 经度 [地名]  发送位置                          (/loc)
  /点击 KEY         点菜单按钮，如 /点击 HELP               (/click)
  /扫码 场景值       扫带参数二维码                          (/scan)
  /图片             发一张图片                              (/image)
  /关注  /取关       关注或取消关注公众号                    (/follow /unfollow)
  /用户 OPENID      换一个微信用户                          (/user)
  /退出             结束                                    (/quit)"""


def parse_command(line: str) -> dict | str | None:
    """The emulator command for a typed line; a string is a message for the person at the terminal."""
    if not line.startswith("/"):
        return {"MsgType": "text", "Content": line}
    verb, _, rest = line[1:].partition(" ")
    rest = rest.strip()
    if verb in ("语音", "voice"):
        if rest.startswith("@"):
            return _voice_file(rest[1:].strip())
        return {"MsgType": "voice", "MediaId": "terminal-voice", "Format": "amr", "Recognition": rest}
    if verb in ("位置", "loc"):
        parts = rest.split(maxsplit=2)
        try:
            latitude, longitude = float(parts[0]), float(parts[1])
        except (IndexError, ValueError):
            return "用法：/位置 纬度 经度 [地名]，例如 /位置 30.27 120.15 村委会"
        return {"MsgType": "location", "Location_X": latitude, "Location_Y": longitude, "Scale": 15,
                "Label": parts[2] if len(parts) > 2 else ""}
    if verb in ("点击", "click"):
        if not rest:
            return "用法：/点击 菜单键，例如 /点击 HELP（菜单键见 README 的“配置”：CHECKIN、ME、ACK、MEETINGS…）"
        return {"MsgType": "event", "Event": "CLICK", "EventKey": rest}
    if verb in ("扫码", "scan"):
        if not rest:
            return ("用法：/扫码 场景值。会议签到二维码的场景值是 meeting:会议编号，会议按召集的先后编号，"
                    "演示里召集的第一个会就是 /扫码 meeting:1；登录后台的二维码是 login:…，"
                    "登录页面（http://127.0.0.1:8080/console/login）上写着整句")
        return {"MsgType": "event", "Event": "SCAN", "EventKey": rest, "Ticket": "terminal"}
    if verb in ("图片", "image"):
        return {"MsgType": "image", "PicUrl": "http://emulator.local/terminal.jpg", "MediaId": "terminal-image"}
    if verb in ("关注", "follow"):
        return {"MsgType": "event", "Event": "subscribe"}
    if verb in ("取关", "unfollow"):
        return {"MsgType": "event", "Event": "unsubscribe"}
    if verb in ("帮助", "help"):
        return CHAT_HELP
    return None


def _voice_file(path: str) -> dict | str:
    """A recording sent as WeChat sends voice now: the audio (uploaded by the emulator), no Recognition."""
    try:
        audio = Path(path).expanduser().read_bytes()
    except OSError as error:
        return f"读不了录音文件 {path}：{error.strerror or error}"
    if not audio:
        return f"录音文件 {path} 是空的"
    audio_format = Path(path).suffix.lstrip(".").lower() or "amr"
    return {"MsgType": "voice", "Format": audio_format, "Recognition": "",
            "AudioBase64": base64.b64encode(audio).decode("ascii")}


def _show(prefix: str, text: str) -> None:
    print(f"{prefix} " + text.replace("\n", "\n" + " " * (len(prefix) + 1)), flush=True)


def _pushed_text(item: dict) -> str:
    body = item["body"]
    if item["kind"] == "custom":
        return body.get("text", {}).get("content", "")
    if item["kind"] == "template":
        values = [value.get("value", "") for value in body.get("data", {}).values()]
        return "［模板消息］" + "｜".join(values)
    return str(body)


async def _watch_pushes(http: aiohttp.ClientSession, url: str, user: list[str]) -> None:
    # One cursor per user: switching to someone shows what was pushed to them meanwhile.
    cursors: dict[str, int] = {}
    while True:
        openid = user[0]
        try:
            params = {"openid": openid, "after": cursors.get(openid, 0)}
            async with http.get(f"{url}/emulator/pushed", params=params) as response:
                data = await response.json()
            for item in data["pushed"]:
                _show("【推送】", _pushed_text(item))
            cursors[openid] = data["next"]
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(1)


async def run_chat(url: str, openid: str, *, greeting: str = "") -> None:
    user = [openid]
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as http:
        watcher = asyncio.create_task(_watch_pushes(http, url, user))
        if greeting:
            print(greeting, flush=True)
        print(f"你现在是微信用户 {openid}。输入 /帮助 查看终端里能做的操作。", flush=True)
        try:
            while True:
                line = await loop.run_in_executor(None, _read_line, f"[{user[0]}] > ")
                if line is None or line.strip() in ("/退出", "/quit", "/exit"):
                    break
                line = line.strip()
                if not line:
                    continue
                if line.startswith(("/用户 ", "/user ")):
                    user[0] = line.split(maxsplit=1)[1].strip()
                    print(f"已切换为微信用户 {user[0]}", flush=True)
                    continue
                command = parse_command(line)
                if command is None:
                    print("没有这个操作。输入 /帮助 查看。", flush=True)
                    continue
                if isinstance(command, str):
                    print(command, flush=True)
                    continue
                try:
                    async with http.post(f"{url}/emulator/send", json={"openid": user[0], **command}) as response:
                        result = await response.json()
                except aiohttp.ClientError as error:
                    print(f"连不上模拟器 {url}：{error}", flush=True)
                    continue
                if result["reply"] is not None:
                    _show("【回复】", result["reply"])
        finally:
            watcher.cancel()


def _read_line(prompt: str) -> str | None:
    try:
        return input(prompt)
    except EOFError:
        return None


def stdin_is_interactive() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()
