"""Use cases of the inventory service (the catalogue, the reservation desk, the sweeper),
the ports they need and the service's exception tree."""

__all__: list[str] = []
