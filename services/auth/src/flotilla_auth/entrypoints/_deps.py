"""What the HTTP modules share: the components dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from flotilla_auth.service_layer.components import Components
from flotilla_kit.app import app_state

__all__ = ["ComponentsDep"]


ComponentsDep = Annotated[Components, Depends(app_state("components"))]
