"""The ``pocketlm`` command. Thin commands; heavy imports happen inside them, so ``--help``
is instant and ``generate``/``chat``/``info`` never touch TensorFlow.

Exit codes: 0 done; 1 a failure while working; 2 a usage error (a bad flag or value, a
path that cannot be used), always reported as one ``pocketlm: error: ...`` line on stderr
before any slow work starts; 130 interrupted.
"""

from __future__ import annotations

import sys

from ..errors import PocketLMError
from .args import Parser, Stdout
from .chat import add_chat
from .convert import add_convert, add_demo
from .families import add_families
from .sensitivity import add_sensitivity
from .generate import add_generate, add_info, add_serve
from .measure import add_bench, add_quality


def build_parser() -> Parser:
    parser = Parser(prog="pocketlm",
                    description="Put a KerasHub LLM on the device: convert, quantize, run.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_convert(sub)
    add_families(sub)
    add_sensitivity(sub)
    add_generate(sub)
    add_chat(sub)
    add_info(sub)
    add_demo(sub)
    add_bench(sub)
    add_quality(sub)
    add_serve(sub)
    return parser


def _version() -> str:
    from .. import __version__
    return f"pocketlm {__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except PocketLMError as exc:
        _end_open_line()
        print(f"pocketlm: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        _end_open_line()
        print("pocketlm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _end_open_line() -> None:
    """End a streamed line on stdout, so that a message on stderr starts its own line."""
    if Stdout.open_line:
        try:
            Stdout.write("\n")
        except OSError:
            pass
