"""The errors makemore reports as one line, `makemore: error: <message>`, with no traceback."""


class MakemoreError(ValueError):
    """Bad input or settings: the message names the file (and line) or the setting, and what is wrong."""


class DataError(MakemoreError):
    """A word list or data setting that cannot be used."""


class CheckpointError(MakemoreError):
    """A file that cannot serve as a makemore checkpoint, or one that does not fit the run it is given to."""


class ConfigError(MakemoreError):
    """Settings that contradict each other or the step machinery."""


class DivergedError(MakemoreError):
    """Training produced a non-finite loss, or one far above the untrained model's."""
