"""Changing how many instances a running system has: `flotilla scale` (`command`), the
requests it hands the supervisor (`requests`), the load read from the gateways
(`gateway_metrics`), the HPA's rule (`hpa`) and the autoscaler that applies it
(`autoscale`, run inside the supervisor)."""
