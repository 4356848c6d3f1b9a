"""The user administration API (`/api/v1/auth/users`): bearer token required; the use
cases check `users:read` / `users:admin` themselves."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from flotilla_auth.domain.users import User
from flotilla_auth.entrypoints._deps import ComponentsDep
from flotilla_auth.service_layer import admin as admin_cases
from flotilla_kit.app import PROBLEM_RESPONSES
from flotilla_kit.content_types import require_json
from flotilla_kit.problems import problem_response
from flotilla_kit.security import Authenticated
from flotilla_kit.text import ApiModel, SingleLine

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/auth/users", tags=["users"], responses=PROBLEM_RESPONSES)
_CONFLICT: dict[int | str, dict[str, object]] = {409: problem_response("Conflict")}


class NewUser(ApiModel):
    model_config = ConfigDict(extra="forbid")

    # Normalised by the use case (NFKC, lower case: stricter than the kit's `Name`).
    username: SingleLine = Field(max_length=256)
    password: str = Field(max_length=4096, json_schema_extra={"format": "password"})
    roles: list[SingleLine] = Field(default_factory=list, max_length=16)


class UserOut(BaseModel):
    id: str
    username: str
    roles: list[str]
    locked: bool = Field(description="Locked by an administrator.")
    disabled: bool = Field(description="Disabled by the seed file (provisioning).")
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            username=user.username,
            roles=list(user.roles),
            locked=user.locked,
            disabled=user.disabled,
            created_at=user.created_at,
        )


class UserList(BaseModel):
    items: list[UserOut]
    next: str | None = Field(description="Pass as `after` for the next page; null at the end.")


UserId = Annotated[str, Path(max_length=64)]
Role = Annotated[str, Path(max_length=64)]


@router.post(
    "",
    status_code=201,
    response_model=UserOut,
    summary="Create a user (users:admin)",
    dependencies=[Depends(require_json)],
    responses=_CONFLICT,
)
async def create_user(
    body: NewUser, principal: Authenticated, components: ComponentsDep
) -> Response:
    user = await admin_cases.create_user(
        uow=components.uow,
        passwords=components.passwords,
        policy=components.password_policy,
        actor=principal,
        now=components.clock(),
        username=body.username,
        password=body.password,
        roles=body.roles,
    )
    return JSONResponse(
        UserOut.of(user).model_dump(mode="json"),
        status_code=201,
        headers={"Location": f"{router.prefix}/{user.id}", "Cache-Control": "no-store"},
    )


@router.get("", response_model=UserList, summary="List users, by id (users:read)")
async def list_users(
    principal: Authenticated,
    components: ComponentsDep,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=admin_cases.MAX_PAGE_SIZE)] = 50,
    after: Annotated[
        str | None, Query(max_length=64, description="`next` of the page before")
    ] = None,
) -> UserList:
    page = await admin_cases.list_users(
        uow=components.uow, actor=principal, limit=limit, after=after
    )
    response.headers["Cache-Control"] = "no-store"
    return UserList(items=[UserOut.of(u) for u in page.items], next=page.next_cursor)


@router.get("/{user_id}", response_model=UserOut, summary="One user (users:read)")
async def read_user(
    user_id: UserId, principal: Authenticated, components: ComponentsDep, response: Response
) -> UserOut:
    user = await admin_cases.get_user_by_id(uow=components.uow, actor=principal, user_id=user_id)
    response.headers["Cache-Control"] = "no-store"
    return UserOut.of(user)


@router.put(
    "/{user_id}/roles/{role}",
    status_code=204,
    response_class=Response,
    summary="Give the user a role (users:admin; idempotent)",
)
async def put_role(
    user_id: UserId, role: Role, principal: Authenticated, components: ComponentsDep
) -> Response:
    await admin_cases.assign_role(
        uow=components.uow, actor=principal, now=components.clock(), user_id=user_id, role=role
    )
    return Response(status_code=204)


@router.delete(
    "/{user_id}/roles/{role}",
    status_code=204,
    response_class=Response,
    summary="Take a role away and end the user's sessions (users:admin; idempotent)",
    responses=_CONFLICT,
)
async def delete_role(
    user_id: UserId, role: Role, principal: Authenticated, components: ComponentsDep
) -> Response:
    await admin_cases.remove_role(
        uow=components.uow, actor=principal, now=components.clock(), user_id=user_id, role=role
    )
    return Response(status_code=204)


@router.post(
    "/{user_id}/lock",
    status_code=204,
    response_class=Response,
    summary="Lock the user out and revoke their sessions (users:admin)",
    responses=_CONFLICT,
)
async def lock(user_id: UserId, principal: Authenticated, components: ComponentsDep) -> Response:
    await admin_cases.lock_user(
        uow=components.uow, actor=principal, now=components.clock(), user_id=user_id
    )
    return Response(status_code=204)


@router.post(
    "/{user_id}/unlock",
    status_code=204,
    response_class=Response,
    summary="Lift a lock and any failed-login lockout (users:admin)",
)
async def unlock(user_id: UserId, principal: Authenticated, components: ComponentsDep) -> Response:
    await admin_cases.unlock_user(
        uow=components.uow, actor=principal, now=components.clock(), user_id=user_id
    )
    return Response(status_code=204)
