"""Plugin A: a main.py with the same function name as plugin B."""


def which():
    return "a"
