"""How chains move: pure JAX kernels with no knowledge of NumPyro (BlackJAX style)."""
