"""The two cookies: the session's id, and the login form's double-submit CSRF token.
Both HttpOnly, Secure, SameSite=Strict, Path=/, without a Domain, under the `__Host-`
prefix (which makes a browser refuse them unless they are all of that): no other site,
no sub-domain and no script can set or read them."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import MutableHeaders

__all__ = ["Cookies"]


@dataclass(frozen=True, slots=True)
class Cookies:
    secure: bool = True

    @property
    def session(self) -> str:
        return "__Host-flotilla_session" if self.secure else "flotilla_session"

    @property
    def csrf(self) -> str:
        return "__Host-flotilla_csrf" if self.secure else "flotilla_csrf"

    def _attributes(self) -> str:
        return "; Path=/; HttpOnly" + ("; Secure" if self.secure else "") + "; SameSite=Strict"

    def set(self, headers: MutableHeaders, name: str, value: str) -> None:
        """A cookie for as long as the browser runs; the server decides when it is over."""
        headers.append("Set-Cookie", f"{name}={value}{self._attributes()}")

    def clear(self, headers: MutableHeaders, name: str) -> None:
        headers.append(
            "Set-Cookie",
            f'{name}=""{self._attributes()}; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT',
        )
