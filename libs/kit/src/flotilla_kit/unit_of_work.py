"""The unit-of-work port: what a service layer asks of a transaction.

A service's own port (`service_layer/ports.py`) extends `UnitOfWork` with the repositories
it carries, and names its factory `UnitOfWorkFactory[ThatPort]`; the SQL implementation,
a subclass of `flotilla_kit.db.UnitOfWork`, lives in the service's
`adapters/unit_of_work.py`, and the tests' in-memory one in `flotilla_kit.testing`.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self, TypeVar

__all__ = ["UnitOfWork", "UnitOfWorkFactory"]


class UnitOfWork(Protocol):
    """One transaction; rolled back on exit unless committed."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...


U_co = TypeVar("U_co", bound=UnitOfWork, covariant=True)


class UnitOfWorkFactory(Protocol[U_co]):
    """Opens a unit of work: `write=False` for one that only reads."""

    def __call__(self, *, write: bool = True) -> U_co: ...
