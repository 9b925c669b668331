"""A TEST DOUBLE of micromamba (not micromamba): the few commands Cema's scripts use, on rattler."""
