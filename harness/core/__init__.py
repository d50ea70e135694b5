"""The pure core: what one call is and what its numbers mean, with no network and no Locust.

Standard library only (no locust, no gevent; ``lint-imports`` checks it): the request, the
SSE parser, one call's measurement and record, the statistics of summary.json, the SLO
grammar, the error tree, exit codes and redaction. Every layer above builds on these.
"""
