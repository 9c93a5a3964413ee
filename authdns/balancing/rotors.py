"""The state balanced answers keep between queries: rotors, one sequence per resolver.

A *rotor* is what one preference group remembers between answers: a round-robin or
subset turn, and the smooth weighted round robin credit. Every deterministic policy's
shares are exact over its own successive answers, so what matters is whose answers
they are. A resolver caches one answer per TTL and sends all the mail of that window by
it; when several resolvers ask in step, one shared sequence hands each of them the same
few positions of the cycle (four resolvers and a cycle of four: each one gets one
member for ever). So each client prefix (``base/hostport.client_prefix``: /24 for
IPv4, /56 for IPv6, as RRL counts clients) keeps its own rotors, and a resolver that
asks every TTL seconds is walked through the whole cycle (issue 14; RFC 5321 §5.1 is
why the cycle must reach each sender whole). When the query carries an EDNS Client
Subnet, the subnet it names is the client instead (``answering/ecs.py``: cut to
min(source, /24 or /56), keys from ``hostport.client_key`` like the peer's), so each
network behind one large resolver walks its own cycle; this module only sees keys.

A client's rotor is *dealt* from the shared one the first time the client meets it:
that answer is planned on the shared rotor, which moves, and the client gets a copy of
where it ended. So clients that ask once each (many resolvers, long TTLs) see the
shared sequence exactly, and one that comes back carries on from its own place.
Answers without a client (``status``, ``explain`` without ``--client``, tests) use the
shared rotors; ``explain --client`` reads that client's (``peek``); neither moves any.

Bounded: at most ``limit`` client rotors (``serve --client-rotors``); when full, the
least recently answered is dropped (a busy resolver keeps its place however many
clients ask once), and its client is dealt a new one from the shared rotor when it
returns (its sequence restarts, its shares stay those of the shared sequence).
``limit`` 0 keeps only the shared rotors (one sequence for everyone).
Lives on the event-loop thread with its Balancer; no I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from authdns.configuration.config import DEFAULT_CLIENT_ROTORS


class SmoothWeighted:
    """Smooth weighted round robin (nginx): over each cycle of sum(weights) picks,
    member i comes first exactly weights[i] times, spread as evenly as possible.

    A new ``epoch`` (the eligible members or the weights an operator or the zone set)
    starts a new cycle from zero credit, so shares are exact from there. Weights that
    move within an epoch (a member degraded, an auto weight's step) keep the credit, as
    nginx keeps current_weight: a reset would hand the first pick to the heaviest member
    every time, and a flapping member would never come first.
    """

    __slots__ = ("epoch", "credit")

    def __init__(self) -> None:
        self.epoch: object = None
        self.credit: list[int] = []

    def pick(self, weights: tuple[int, ...], commit: bool = True, epoch: object = None) -> int:
        fresh = epoch != self.epoch or len(self.credit) != len(weights)
        credit = [0] * len(weights) if fresh else list(self.credit)
        total = 0
        best = -1
        for index, weight in enumerate(weights):
            if weight > 0:
                credit[index] += weight
                total += weight
                if best < 0 or credit[index] > credit[best]:
                    best = index
            else:
                credit[index] = 0  # not eligible now: no debt or savings to carry
        credit[best] -= total
        if commit:
            self.epoch, self.credit = epoch, credit
        return best


@dataclass(slots=True)
class Rotor:
    """The state one preference group keeps between answers (for one client, or shared)."""

    turn: int = 0  # round robin and answer: N subsets: answers given so far
    smooth: SmoothWeighted = field(default_factory=SmoothWeighted)

    def copy(self) -> Rotor:
        smooth = SmoothWeighted()
        smooth.epoch, smooth.credit = self.smooth.epoch, self.smooth.credit  # pick() never mutates a credit list
        return Rotor(self.turn, smooth)


class Rotors:
    """The shared rotors by group key, and each client's, bounded (module docstring)."""

    __slots__ = ("shared", "clients", "limit")

    def __init__(self, limit: int = DEFAULT_CLIENT_ROTORS) -> None:
        self.shared: dict[tuple, Rotor] = {}
        # (client prefix, group key) -> Rotor, least recently answered first: a busy
        # resolver stays while clients that asked once make room for others
        self.clients: OrderedDict[tuple, Rotor] = OrderedDict()
        self.limit = limit

    def shared_rotor(self, key: tuple) -> Rotor:
        rotor = self.shared.get(key)
        if rotor is None:
            rotor = self.shared[key] = Rotor()
        return rotor

    def peek(self, key: tuple, client: bytes | None = None) -> Rotor:
        """The rotor the next answer to ``client`` would move, as it is, creating
        nothing (``explain``): the client's own, else the shared one."""
        own = self.clients.get((client, key)) if client is not None else None
        return own or self.shared.get(key) or Rotor()

    def for_answer(self, client: bytes | None, key: tuple) -> Rotor:
        """The rotor an answer to ``client`` moves for group ``key``: the client's own,
        or the shared one (the caller then ``deal``s, once the answer is planned)."""
        if client is not None and self.limit:
            own = self.clients.get((client, key))
            if own is not None:
                return own
        return self.shared_rotor(key)

    def deal(self, client: bytes | None, moved: list[tuple]) -> None:
        """After an answer to ``client`` moved the rotors of ``moved`` (in the order the
        slow path met them): each of the client's own becomes the most recently
        answered, and the client gets a copy of each shared one it moved. Only what
        was moved counts, so a replayed answer (orders.py) leaves the table exactly as
        the planned one would, evictions included."""
        if client is None or not moved or not self.limit:
            return
        clients = self.clients
        for key in moved:
            if (client, key) in clients:
                clients.move_to_end((client, key))  # its own, or the same group twice in one answer
                continue
            while len(clients) >= self.limit:
                clients.popitem(last=False)  # the least recently answered: dealt again if it returns
            clients[(client, key)] = self.shared[key].copy()

    def retain(self, keys: set[tuple]) -> None:
        """Keep the rotors of the groups still served (a reload): by the exact group key,
        so a group whose members or policy changed lets its old rotors go."""
        self.shared = {key: rotor for key, rotor in self.shared.items() if key in keys}
        self.clients = OrderedDict((key, rotor) for key, rotor in self.clients.items() if key[1] in keys)

    def __len__(self) -> int:
        return len(self.shared) + len(self.clients)
