"""flotilla_auth: the identity service (users, credentials, access and refresh tokens, JWKS).

Run it with `python -m flotilla_auth serve`; `bootstrap.create_app` builds the ASGI app.
"""

__all__: list[str] = []
__version__ = "0.1.0"
