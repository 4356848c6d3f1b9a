"""Billing's adapters: tables, the document repository, the outbox, the PDF renderer."""
