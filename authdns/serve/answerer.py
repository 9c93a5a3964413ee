"""What answers queries in one process, built in one place: the ``Balancer`` (rotors,
member counters), the ``TransferResponder`` (AXFR/IXFR, access rules), the
``Responder`` (the query path) and the ``DnsServer`` (UDP and TCP listeners) over a
``StateHolder``. The single process (serve/service.py) and each worker (serve/workers.py) build it
with ``build_answerer``, so both answer with the same pieces wired the same way.
Nothing here starts anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from authdns.configuration.config import ServerConfig
from authdns.balancing.counters import Totals
from authdns.balancing.ordering import Balancer
from authdns.engine.responder import Responder
from authdns.serve.rrl import RateLimiter
from authdns.serve.server import DnsServer
from authdns.engine.state import StateHolder
from authdns.transfer.zonetransfer import TransferResponder


@dataclass(frozen=True, slots=True)
class Answerer:
    balancer: Balancer
    transfer: TransferResponder
    responder: Responder
    dns: DnsServer

    def totals(self) -> Totals:
        """A copy of what this process's responder and balancer have counted so far
        (``counters.Totals``)."""
        responder, balancer = self.responder, self.balancer
        return Totals(responder.counters.copy(), responder.fast_hits, balancer.fail_open_answers,
                      {key: counters.copy() for key, counters in balancer.counters.items()})


def build_answerer(config: ServerConfig, holder: StateHolder, limiter: RateLimiter | None = None) -> Answerer:
    """``limiter``: the supervisor's rate limiter a worker shares (serve/rrl.py); None:
    the server makes its own with ``--rrl-rate``."""
    balancer = Balancer(client_rotors=config.client_rotors)
    transfer = TransferResponder(holder, config)
    responder = Responder(holder, config, balancer, transfer=transfer)
    return Answerer(balancer, transfer, responder, DnsServer(config, responder, limiter))
