"""Runs inside the ``talk`` env on the Ray workers (through in_env): only that env has cowsay."""

import os


def speak(text):
    """What the env's cowsay says for ``text`` (the character comes from the spec variables)."""
    import cowsay

    return cowsay.get_output_string(os.environ.get("TALK_CHARACTER", "cow"), text)
