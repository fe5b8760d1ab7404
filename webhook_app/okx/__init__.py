"""OKX: the signed REST client (``client``, its reads in ``reads``), what OKX's answers mean
(``errors``), and each signal-bot action's request, outcome table and evidence (``actions``)."""
