"""Plugin B: a main.py with the same function name as plugin A."""


def which():
    return "b"
