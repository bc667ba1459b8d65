"""Layer 1, the population: the synthetic generator and its counter-based draws, event
files and their per-user store, featurization, the population as a function of the user
index with its train/held-out split, and device behaviour (consent, dropout, speed)."""
