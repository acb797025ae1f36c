"""The demo-folder errors, on the data package's ground floor: the format, its lock and its
converters all raise them, and each prints as one line naming the file and the field."""
from __future__ import annotations

import os


class DemoFormatError(ValueError):
    """A demo folder or episode file that does not match its ``meta.json``.

    The message always names the file, the field and what was expected, so a
    user can fix or delete the one bad file instead of reading a numpy traceback.
    """

    def __init__(self, path: str | os.PathLike, field_name: str, problem: str):
        self.path = str(path)
        self.field = field_name
        self.problem = problem
        super().__init__(f"{self.path}: field '{field_name}': {problem}")


class DemoWriteError(DemoFormatError, OSError):
    """Writing into a demo folder failed in the operating system (no space left on device,
    a read-only or vanished folder, ...).

    An ``OSError`` (with the original ``errno``) for code that handles I/O failures, and a
    ``DemoFormatError`` so that every command prints it as one line naming the file. When it
    is raised the file being written has been removed and the folder holds exactly what it
    held before the failed write.
    """

    def __init__(self, path: str | os.PathLike, exc: OSError, what: str = "write", outcome: str = "the folder is unchanged"):
        reason = (exc.strerror or str(exc) or type(exc).__name__).lower()
        super().__init__(path, "<write>", f"cannot {what}: {reason}; {outcome}")
        self.errno, self.strerror, self.filename = exc.errno, exc.strerror, str(path)

    def __str__(self) -> str:
        return str(self.args[0])
