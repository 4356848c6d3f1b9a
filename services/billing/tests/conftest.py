"""Fixtures for the billing tests (shared ones come from the repository root conftest)."""
