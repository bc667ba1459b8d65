"""Layer 6, one run: the training loop (`training`), what it records each round
(`recording`) and the final evaluation (`evaluation`)."""
