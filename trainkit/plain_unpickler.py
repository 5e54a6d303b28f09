"""Reading a pickle as plain data, never as code.

``pickle.load`` calls whatever callables a file names (``os.system`` with a shell command,
for one), so a crafted ``meta.pkl`` in a dataset folder could run code when a trainer reads
its vocabulary. :class:`PlainDataUnpickler` refuses every global but the set types, so a
file can only describe dicts, lists, tuples, sets, strings, numbers, booleans and None.
"""

from __future__ import annotations

import pickle
from typing import Any

__all__ = ["PlainDataUnpickler"]


class PlainDataUnpickler(pickle.Unpickler):
    """Reads a pickle of plain data only: dicts, lists, tuples, strings, numbers, booleans
    and None, which pickle builds from its own opcodes, plus sets (and bytes from protocol 3 on). Any other global
    (a class, a function such as ``os.system``: what a crafted file runs code with) is
    refused before it is looked up, so nothing in the file is ever called."""

    # How protocols 0-3 write sets (protocols 0-2 under Python 2's module name).
    ALLOWED = {(module, name) for module in ("builtins", "__builtin__") for name in ("set", "frozenset")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it refers to {module}.{name}, and only plain data (dicts, lists, strings, "
                                     f"numbers) is read from a vocabulary file; nothing in it was run")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("it refers to a persistent object, and only plain data is read; nothing in it was run")
