"""The order of balanced answers: policies, rotors, the memoised Orders, record arrangement, drains and weights (overrides), and the counters' read model."""
