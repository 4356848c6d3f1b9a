"""The web service's use cases (sessions, the bank's, the shop's, orders, invoices) and
the ports (Protocols) the adapters implement."""
