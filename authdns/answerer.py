"""What answers queries in one process, built in one place: the ``Balancer`` (rotors,
member counters), the ``TransferResponder`` (AXFR/IXFR, access rules), the
``Responder`` (the query path) and the ``DnsServer`` (UDP and TCP listeners) over a
``StateHolder``. The single process (service.py) and each worker (workers.py) build it
with ``build_answerer``, so both answer with the same pieces wired the same way.
Nothing here starts anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ServerConfig
from .counters import Totals
from .ordering import Balancer
from .responder import Responder
from .server import DnsServer
from .state import StateHolder
from .transfer import TransferResponder


@dataclass(frozen=True, slots=True)
class Answerer:
    balancer: Balancer
    transfer: TransferResponder
    responder: Responder
    dns: DnsServer

    def totals(self) -> Totals:
        """What this process has counted (``counters.Totals``)."""
        return Totals.of(self.responder, self.balancer)


def build_answerer(config: ServerConfig, holder: StateHolder) -> Answerer:
    balancer = Balancer()
    transfer = TransferResponder(holder, config)
    responder = Responder(holder, config, balancer, transfer=transfer)
    return Answerer(balancer, transfer, responder, DnsServer(config, responder))
