"""Name -> object registries with Dassl's semantics and a did-you-mean error."""
from __future__ import annotations

import difflib
from typing import Any, Callable, Dict, Iterable, Iterator, Optional


def unknown_name_message(kind: str, name: str, valid: Iterable[str]) -> str:
    """'Unknown trainer "Coop". Did you mean "CoOp"? Valid names: ...' (case-insensitive match first)."""
    valid = sorted(valid)
    same_case = [v for v in valid if v.lower() == name.lower()]
    close = same_case or difflib.get_close_matches(name, valid, n=1)
    hint = f' Did you mean "{close[0]}"?' if close else ""
    return f'Unknown {kind.lower()} "{name}".{hint} Valid names: {", ".join(valid) or "(none registered)"}'


def require_registered(registry: Any, name: str, kind: str) -> None:
    """Raise our clear KeyError for ``name`` on any registry with ``registered_names()`` (ours or Dassl's)."""
    valid = list(registry.registered_names())
    if name not in valid:
        raise KeyError(unknown_name_message(kind, name, valid))


class Registry:
    """Maps names to classes or functions.

    ``@REG.register()`` registers under ``obj.__name__`` (a duplicate raises ``KeyError`` unless
    ``force=True``), ``REG.get(name)`` looks a name up and raises ``KeyError`` listing the valid
    names, with a suggestion when one is close.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._obj_map: Dict[str, Any] = {}

    def _do_register(self, name: str, obj: Any, force: bool = False) -> None:
        if name in self._obj_map and not force and self._obj_map[name] is not obj:
            raise KeyError(f'An object named "{name}" was already registered in the "{self._name}" registry')
        self._obj_map[name] = obj

    def register(self, obj: Any = None, force: bool = False) -> Optional[Callable]:
        if obj is None:
            def wrapper(fn_or_class: Any) -> Any:
                self._do_register(fn_or_class.__name__, fn_or_class, force=force)
                return fn_or_class
            return wrapper
        self._do_register(obj.__name__, obj, force=force)
        return obj

    def get(self, name: str) -> Any:
        if name not in self._obj_map:
            raise KeyError(unknown_name_message(self._name, name, self._obj_map))
        return self._obj_map[name]

    def registered_names(self) -> list:
        return list(self._obj_map.keys())

    def __contains__(self, name: str) -> bool:
        return name in self._obj_map

    def __iter__(self) -> Iterator[str]:
        return iter(self._obj_map)
