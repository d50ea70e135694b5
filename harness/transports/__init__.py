"""How a request reaches the server: the transport seam and its two implementations.

HTTP and gevent, no Locust: ``sdk`` (the official anthropic client) and ``fast`` (raw HTTP on
geventhttpclient). Both report to the core's :class:`~harness.core.measure.CallMeasurement`,
so they produce identical records for identical streams.
"""
