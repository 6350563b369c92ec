"""tms: a reproducible replication of Elhage et al. (2022), "Toy Models of Superposition".

Modules: ``rng`` (counter-based random numbers), ``data`` (feature distributions), ``models``,
``optim``, ``training`` (the fused vectorised trainer), ``metrics``, ``theory``, ``exact`` (exact
expected losses of small models), ``config``,
``experiments``, ``figures``, ``findings``, ``report``, ``freeze``, ``cli``.
"""

__version__ = "0.1.0"
