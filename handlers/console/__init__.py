"""The staff console's front door: signing in (a QR code scanned in WeChat, or a password), signing out (on
the page, or 退出后台 in chat), the console's home, and the audit log the county reads.

common.py holds the router, its start-up hook and the texts; signin.py the sign-in pages and the chat side
(the scan, 退出后台); home.py the home and audit pages; passwords.py the passwords (argon2) that
`zhibu staff passwd` sets. What every console page shares (the cookie, StaffView, staff_page, CSRF) is in
bot/web/console.py, so that other features add console pages without importing this one.
"""

from handlers.console import home, signin  # noqa: F401  (register pages and handlers)
from handlers.console.common import router

__all__ = ["router"]
