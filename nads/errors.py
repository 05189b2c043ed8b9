"""The project's exceptions: a leaf module, so that any module can raise them."""


class InputError(ValueError):
    """Input a stage cannot use (a parameter, a file, a model, the tracking store),
    found before any long compute; the message is one line and says what to do."""

    def __init__(self, message: str):
        # Messages quote other errors (tarfile, torch...) that may span lines.
        super().__init__(" ".join(str(message).split()))


class ParamError(InputError):
    """A parameter that cannot be used."""
