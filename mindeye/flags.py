"""Command-line flags built from a config dataclass's fields (HfArgumentParser's idea, without transformers): a
flag's name, type, default and help are written once, on the field (see ``mindeye.train_config``). Loads no torch."""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing

META_KEYS = {"help", "choices", "metavar", "cli"}


def flag_fields(cls) -> list[dataclasses.Field]:
    """``cls``'s flags: the fields its own class body declares, in that order (a subclass re-declares each
    inherited field it takes as a flag), less those whose metadata says ``cli=False``."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    own = [fields[name] for name in cls.__dict__.get("__annotations__", {}) if name in fields]
    for f in own:
        if set(f.metadata) - META_KEYS:
            raise TypeError(f"{cls.__name__}.{f.name}: unknown flag metadata {sorted(set(f.metadata) - META_KEYS)}")
    return [f for f in own if f.metadata.get("cli", True)]


def _argparse_kwargs(f: dataclasses.Field, hint) -> dict:
    """add_argument's keywords for field ``f`` of type ``hint``: bool -> --x/--no-x, ``X | None`` -> X,
    ``tuple[X, ...]`` -> one or more X."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"flag {f.name}: only X | None unions become flags, not {hint}")
        hint, args = rest[0], typing.get_args(rest[0])
    kw = {k: f.metadata[k] for k in ("help", "choices", "metavar") if k in f.metadata}
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction, **kw}
    if typing.get_origin(hint) is tuple:
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"flag {f.name}: tuples become flags as tuple[X, ...], not {hint}")
        return {"type": args[0], "nargs": "+", **kw}
    if hint in (int, float, str):
        return {"type": hint, **kw}
    raise TypeError(f"flag {f.name}: no flag for type {hint}")


def add_dataclass_flags(parser: argparse.ArgumentParser, cls, defaults: bool = True) -> None:
    """Add ``--name`` for every flag field of ``cls`` (``flag_fields``), with its metadata's help, choices and
    metavar. ``defaults``: fill in every field's default, the non-flag fields' too (off: a flag not given is
    left out of the parsed namespace, argparse.SUPPRESS, to learn which flags a command line gives)."""
    hints = typing.get_type_hints(cls)
    for f in flag_fields(cls):
        kw = _argparse_kwargs(f, hints[f.name])
        if not defaults:
            kw["default"] = argparse.SUPPRESS
        # no default here (set_defaults below): a BooleanOptionalAction built with one would add
        # "(default: ...)" to its help
        parser.add_argument(f"--{f.name}", **kw)
    if defaults:
        parser.set_defaults(**{f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                               for f in dataclasses.fields(cls)})


def check_choices(cfg) -> None:
    """Raise ``DataError`` naming the flag, its choices and the value found, for every field of the dataclass
    ``cfg`` whose flag has ``choices`` and whose value is set (not None): a config built in Python is checked like
    one parsed from argv."""
    from .data.errors import DataError
    for f in flag_fields(type(cfg)):
        choices = f.metadata.get("choices")
        if choices and getattr(cfg, f.name) is not None and getattr(cfg, f.name) not in choices:
            raise DataError(f"--{f.name} should be one of {', '.join(map(repr, choices))}, "
                            f"found {getattr(cfg, f.name)!r}")
