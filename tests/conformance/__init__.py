"""The conformance corpus: NumPyro models as users write them, checked against NumPyro's NUTS (see `corpus`)."""
