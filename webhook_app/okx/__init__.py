"""OKX: the signed REST client (``client``) and what OKX's own records say about an ambiguous
margin request (``evidence``)."""
