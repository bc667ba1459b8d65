"""Client data: the synthetic population, featurization and the train/eval split."""
