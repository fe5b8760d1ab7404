"""The margin-balance action (``add``/``reduce``): its request, its outcome table, and the evidence
of an ambiguous answer from OKX's own records."""
