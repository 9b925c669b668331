"""A plugin module: runs inside numpy_env, with that env's numpy."""

import numpy as np


def numpy_version():
    return np.__version__


def process(values):
    return float(np.asarray(values, dtype=float).mean())
