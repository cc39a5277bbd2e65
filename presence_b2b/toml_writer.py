"""TOML text for configuration values: the example file, ``check-config --defaults``
and the files tests and benchmarks write.

The standard library reads TOML but cannot write it, and a configuration holds only
strings, numbers, booleans and flat lists, so one small writer does.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["toml_tables", "toml_value"]


def toml_value(value: object) -> str:
    """The TOML literal of a string, number, boolean or list of those."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _basic_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _basic_string(text: str) -> str:
    """A TOML basic string: quote, backslash and control characters escaped, the rest
    (non-ASCII included) as it is, since TOML files are UTF-8."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def toml_tables(tables: Mapping[str, Mapping[str, object]]) -> str:
    """A TOML document of ``[name]`` tables of ``key = value`` lines, in the given order."""
    lines: list[str] = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in table.items())
        lines.append("")
    return "\n".join(lines)
