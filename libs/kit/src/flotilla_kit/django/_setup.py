"""Django's settings, in code, once per process: the kit's, not a settings module's.

No ORM database (data goes through `flotilla_kit.db`), no sessions, admin, auth or
contenttypes apps, no template engine, no middleware of Django's own (no CSRF: the API
takes bearer tokens, not cookies; no `APPEND_SLASH` redirect: a trailing slash is another
path, as on FastAPI). `DEBUG` off. `ALLOWED_HOSTS` is every host: the service is reached
behind the gateway under names Django cannot know (its service name, its pod's address
for probes and scrapes), and builds no absolute URL from the `Host` header. The body limit
is the chassis's (`max_body_bytes`), so Django's own is off. Logging stays the kit's
(`LOGGING_CONFIG` off). REST framework: JSON in and out only, no authentication classes
of its own (the kit's permission classes check the token), deny by default, errors
answered as problems by `flotilla_kit.django._problems.exception_handler`.
"""

from __future__ import annotations

import logging
import secrets
import threading

import django
from django.conf import settings

__all__ = ["configure_django"]

_lock = threading.Lock()
# `urlpatterns` of the settings' ROOT_URLCONF: each app answers from its own URLs
# (`request.urlconf`), so the process-wide one is empty.
urlpatterns: list[object] = []

_EXCEPTION_HANDLER = "flotilla_kit.django._problems.exception_handler"
KIT_SETTINGS: dict[str, object] = {
    "DEBUG": False,
    # Nothing is signed with it (no sessions, no CSRF, no signed cookies); Django wants one.
    "SECRET_KEY": secrets.token_urlsafe(48),
    "ALLOWED_HOSTS": ["*"],
    "ROOT_URLCONF": __name__,
    "INSTALLED_APPS": [],
    "MIDDLEWARE": ["flotilla_kit.django._app.RouteLabel"],
    "DATABASES": {},
    "TEMPLATES": [],
    "USE_I18N": False,
    "USE_TZ": True,
    "LOGGING_CONFIG": None,
    "DATA_UPLOAD_MAX_MEMORY_SIZE": None,
    "APPEND_SLASH": False,
    "REST_FRAMEWORK": {
        "DEFAULT_AUTHENTICATION_CLASSES": [],
        "DEFAULT_PERMISSION_CLASSES": ["flotilla_kit.django._access.DenyAll"],
        "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
        "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
        "DEFAULT_THROTTLE_CLASSES": [],
        "UNAUTHENTICATED_USER": None,
        "UNAUTHENTICATED_TOKEN": None,
        "EXCEPTION_HANDLER": _EXCEPTION_HANDLER,
        "UNICODE_JSON": True,
        "COMPACT_JSON": True,
        "URL_FORMAT_OVERRIDE": None,
        "FORMAT_SUFFIX_KWARG": None,
    },
}


def configure_django() -> None:
    """Configure Django with the kit's settings (once per process; a process whose
    settings were configured otherwise keeps them)."""
    with _lock:
        if settings.configured:
            handler = getattr(settings, "REST_FRAMEWORK", {}).get("EXCEPTION_HANDLER")
            if handler != _EXCEPTION_HANDLER:
                raise RuntimeError(
                    "Django's settings were configured before flotilla_kit.django was "
                    "imported, without the kit's (errors would not be problems): import "
                    "flotilla_kit.django first, in the service package's __init__.py, and "
                    "set no DJANGO_SETTINGS_MODULE"
                )
            return
        settings.configure(**KIT_SETTINGS)
        django.setup(set_prefix=False)
        # Django logs every 4xx and 5xx answer on `django.request`; the kit's access line
        # and its `unhandled exception` line (with the trace) already say it.
        logging.getLogger("django.request").setLevel(logging.CRITICAL)
