"""What the commands' arguments share: one reading of an exercise number, so `grader check`, `hint`, `reset`,
`watch`, `ci` and `gradescope-bundle` accept the same spellings."""
from __future__ import annotations

import argparse


def exercise_number(text: str) -> int:
    """N or exN as an exercise number; anything else is a usage error argparse reports plainly."""
    try:
        return int(text.removeprefix("ex"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an exercise number") from None
