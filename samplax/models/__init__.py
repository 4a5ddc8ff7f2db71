"""What is sampled: the NumPyro bridge, the model zoo and graph targets."""
