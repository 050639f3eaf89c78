"""Text files for training and evaluation: reading them safely, and the held-out split.

Plain Python on purpose: training, evaluation and the runtime-side tools all share it.
"""

from __future__ import annotations

from pathlib import Path

from .errors import PocketLMError

# A few lines of public-domain text (Shakespeare, Sonnet 18 and Hamlet) so that calibration
# and smoke tests have something sensible to read when the user gives no file.
SAMPLE_TEXT = """Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date.
To be, or not to be, that is the question:
Whether 'tis nobler in the mind to suffer
The slings and arrows of outrageous fortune,
Or to take arms against a sea of troubles
And by opposing end them. To die: to sleep;
No more; and by a sleep to say we end
The heart-ache and the thousand natural shocks
That flesh is heir to, 'tis a consummation
Devoutly to be wish'd. I'm enjoying a quiet evening by the river,
and the light on the water is soft and golden. The weather today is mild.
"""


def read_text(path: str | Path) -> str:
    """Read a UTF-8 text file, with a clear error for a missing or undecodable file."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PocketLMError(f"text file not found: {p}") from None
    except UnicodeDecodeError as exc:
        raise PocketLMError(f"{p} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise PocketLMError(f"cannot read {p}: {exc.strerror}") from None


def split_holdout(text: str, holdout_fraction: float = 0.1) -> tuple[str, str]:
    """Split ``text`` into (train, held-out): the held-out part is the last fraction.

    The cut moves forward to the next line start so no line is cut in two; training and
    evaluation both call this, so they agree on the split.
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError("holdout_fraction must be between 0 and 1")
    cut = int(len(text) * (1.0 - holdout_fraction))
    newline = text.find("\n", cut)
    if newline != -1:
        cut = newline + 1
    return text[:cut], text[cut:]
