"""One exception type for bad user input, so the CLI can print it cleanly instead of a traceback."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input from a file or the command line, located as precisely as we can (file, line, field)."""

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.reason = message
        where = ""
        if self.path:
            where = self.path + (f":{line}" if line is not None else "")
        if field:
            where = f"{where} [{field}]" if where else f"[{field}]"
        super().__init__(f"{where}: {message}" if where else message)
