"""What every command shares: the parser (one-line errors, exit code 2, defaults in the
help), value types that refuse NaN, infinity and out-of-range numbers, and stdout state."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Callable, NoReturn

from ..config import MAX_TEMPERATURE, Quantization

QUANTIZATIONS = tuple(q.value for q in Quantization)
SEED_MAX = 2**32 - 1  # Keras and NumPy's legacy seeding take 32-bit seeds


class Parser(argparse.ArgumentParser):
    """argparse with pocketlm's error format: one line, ``pocketlm: error: ...``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"pocketlm: error: {message} (see `{self.prog} --help`)\n")


class HelpFormatter(argparse.HelpFormatter):
    """Appends the default to every option's help, except unset ones (None, off, empty)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or default is None or default is False
                or default == [] or default is argparse.SUPPRESS
                or not (action.option_strings or action.nargs in ("?", "*"))):
            return text
        return f"{text} (default: %(default)s)"


def add_command(sub, name: str, func: Callable, help: str, description: str
                ) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=description,
                       formatter_class=HelpFormatter)
    p.set_defaults(func=func)
    return p


# -- value types (argparse calls them; ArgumentTypeError becomes "argument X: message") --
def _range_text(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return (f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
                if isinstance(lo, float) or isinstance(hi, float) else f"in {lo}..{hi}")
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    return f"{'<' if hi_open else '<='} {hi:g}"


def integer(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """A type for whole numbers in [lo, hi] (either bound may be None: open)."""
    def parse(text: str) -> int:
        try:
            value = int(text.strip().replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(
                f"must be {_range_text(lo, hi, False, False)}, not {value}")
        return value
    parse.__name__ = "integer"
    return parse


def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False,
           hi_open: bool = False) -> Callable[[str], float]:
    """A type for finite floats in the range [lo, hi] (open ends with ``lo_open``/
    ``hi_open``; a bound of None means none). NaN and infinity are refused."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
        if ((lo is not None and (value < lo or (lo_open and value == lo)))
                or (hi is not None and (value > hi or (hi_open and value == hi)))):
            lo_f = None if lo is None else float(lo)
            hi_f = None if hi is None else float(hi)
            raise argparse.ArgumentTypeError(
                f"must be {_range_text(lo_f, hi_f, lo_open, hi_open)}, not {text}")
        return value
    parse.__name__ = "number"
    return parse


def integers(lo: int = 1, hi: int | None = None) -> Callable[[str], tuple[int, ...]]:
    """A type for a comma-separated list of whole numbers, each in [lo, hi]."""
    one = integer(lo, hi)

    def parse(text: str) -> tuple[int, ...]:
        items = [x for x in text.split(",") if x.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"must list whole numbers, not {text!r}")
        try:
            return tuple(one(x) for x in items)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"each {exc}") from None
    parse.__name__ = "integers"
    return parse


def quantization(text: str) -> Quantization:
    try:
        return Quantization.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def quantizations(text: str) -> tuple[Quantization, ...]:
    items = [x for x in text.split(",") if x.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"choose from: {', '.join(QUANTIZATIONS)}")
    return tuple(quantization(x) for x in items)


QUANTIZATION_HELP = f"quantization: {' | '.join(QUANTIZATIONS)}"


def add_generation_options(p: argparse.ArgumentParser, max_new_tokens: int,
                           temperature: float, top_k: int, seed: int | None) -> None:
    """The sampling options generate and demo share."""
    p.add_argument("-n", "--max-new-tokens", type=integer(0), default=max_new_tokens,
                   help="most tokens to generate (the model's window may stop it sooner)")
    p.add_argument("-t", "--temperature", type=number(0, MAX_TEMPERATURE), default=temperature,
                   help=f"sampling temperature, 0..{MAX_TEMPERATURE:g}; 0 = greedy")
    p.add_argument("--top-k", type=integer(0), default=top_k,
                   help="sample only among the k likeliest tokens; 0 = no cut")
    p.add_argument("--top-p", type=number(0, 1, lo_open=True), default=1.0,
                   help="sample only among the likeliest tokens holding this much "
                        "probability, in (0, 1]; 1 = no cut")
    p.add_argument("--seed", type=integer(0, SEED_MAX), default=seed,
                   help=f"seed of the sampler, 0..{SEED_MAX} (the same seed gives the same "
                        "text)")


class Stdout:
    """Whether stdout holds a line without its newline (a completion being streamed), so an
    interruption can end that line before saying so on stderr."""

    open_line = False

    @classmethod
    def write(cls, text: str) -> None:
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
            cls.open_line = not text.endswith("\n")
