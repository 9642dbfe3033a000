"""Bearer tokens, compared in constant time.

Each presented token and each configured one are hashed to 32 bytes first, so neither the
comparison time nor its early exit tells an attacker how long a token is or how much of
it matched; every configured token is compared, matched or not. The dashboard, opened in
a browser that cannot send an Authorization header, uses the same token in an HttpOnly,
SameSite=Strict cookie (set by POST /login), and its forms carry a CSRF value derived
from the token.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import HTTPException, Request

COOKIE = "phiscrub_session"


def _h(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class TokenAuth:
    def __init__(self, tokens: tuple[str, ...], required: bool = True) -> None:
        self._hashes = [_h(t) for t in tokens]
        self.required = required

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        given = _h(token)
        ok = False
        for h in self._hashes:
            ok |= hmac.compare_digest(given, h)
        return ok

    def presented(self, request: Request) -> tuple[str | None, str]:
        """(token, how): from the Authorization header, else the dashboard's cookie."""
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip(), "bearer"
        cookie = request.cookies.get(COOKIE)
        if cookie:
            return cookie, "cookie"
        return None, ""

    def principal(self, request: Request) -> str:
        """Who is asking, as a short PHI-free id for the audit (a hash of the token);
        raises 401 when no valid token came."""
        if not self.required:
            return "anonymous"
        token, _ = self.presented(request)
        if not self.valid(token):
            raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": 'Bearer realm="phiscrub"'})
        return "token-" + hashlib.sha256(b"principal\x00" + _h(token or "")).hexdigest()[:12]


def csrf_value(token: str) -> str:
    return hmac.new(_h(token), b"csrf", hashlib.sha256).hexdigest()[:32]


def check_csrf(auth: TokenAuth, request: Request, form_value: str) -> None:
    """Forms authenticated by the cookie must carry the token's CSRF value (SameSite=Strict
    already stops cross-site posts in current browsers; this covers the rest)."""
    token, how = auth.presented(request)
    if how != "cookie" or not auth.required:
        return
    if not hmac.compare_digest(csrf_value(token or ""), form_value or ""):
        raise HTTPException(403, "missing or wrong CSRF value: reload the dashboard")
