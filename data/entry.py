"""How every command-line entry point ends on an expected failure: one sentence on stderr naming the file or
flag, exit status 2, and no traceback unless -v asks for it (then the traceback too). Ctrl-C: exit 130.

    if __name__ == "__main__":
        sys.exit(entry.run(get_args_parser(), main))
"""

import argparse
import sys
import traceback
from pathlib import Path

from data import files
from data.constants import DEMO_ROWS

EXPECTED = (ValueError, OSError)  # DataError, CheckpointError, WriteError, ... (a bug raises something else)


def path(text: str) -> Path:
    """A path flag's value. Empty text (`--out ""`, or a shell variable that was never set) is refused: read as a
    path it would be the current folder, and files would land there without a word."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty: give a path")
    return Path(text)


def location(text: str) -> str:
    """A folder or a storage URI (s3://bucket/prefix) flag's value; empty text is refused, as by ``path``."""
    return str(path(text)) if "://" not in text else text


MAX_SEED = 2**31 - 1  # numpy, scikit-learn and Optuna take seeds below 2**32; a study adds its seed runs' count


def whole_number(low: int, high: int | None = None, what: str | None = None):
    """An argument type: a whole number from ``low`` (to ``high``); its error says the bounds (and ``what``)."""
    bounds = f"from {low:,} to {high:,}" if high is not None else f"of at least {low:,}"

    def parse(text: str) -> int:
        value = int(text) if text.strip().lstrip("+-").isdigit() else None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be a whole number {bounds}{f' ({what})' if what else ''}, "
                                             f"not {text}")
        return value
    return parse


seed = whole_number(0, MAX_SEED)  # a seed flag's type, every entry point's
demo_rows = whole_number(*DEMO_ROWS, "rows of the demo mitbih_train.csv")


def add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="tracebacks on errors")


def sentence(error: BaseException) -> str:
    """An error as the one sentence a user reads: a bare OSError ("[Errno 2] No such file ...") as its file and
    what the system said; our own errors (WriteError, DataError, ...) as they are."""
    if isinstance(error, OSError) and error.filename is not None and str(error).startswith("[Errno"):
        blocking = files.file_in_the_way(error)
        if blocking is not None:
            where = "" if blocking == Path(error.filename) else f"{error.filename}: "
            return f"{where}{blocking} is a file, not a folder"
        target = f" -> {error.filename2}" if error.filename2 is not None else ""
        return f"{error.filename}{target}: {error.strerror}"
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# Actions a flag may take more than once by design, or that take no value.
_REPEATABLE = (argparse._AppendAction, argparse._AppendConstAction, argparse._CountAction, argparse._ExtendAction,
               argparse._HelpAction, argparse._VersionAction)


def parse(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, refusing a flag that takes a value and is given twice: argparse keeps the last
    one without a word, so `--epochs 40 ... --epochs 4` would train 4 epochs where the user reads 40."""
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    options = _long_options(parser, argv)
    seen: dict[str, str] = {}  # a flag's longest name -> the value it was first given
    for i, token in enumerate(argv):
        if token == "--":
            break
        if not token.startswith("--"):
            continue
        flag, equals, inline = token.partition("=")
        # As argparse reads it: a flag's own name, else the one option it is a prefix of (`--demo` is --demo, not
        # an abbreviation of --demo-rows)
        matches = {flag} if flag in options else {option for option in options if option.startswith(flag)}
        if len(matches) != 1:
            continue
        canonical, takes_value = options[matches.pop()]
        if not takes_value:
            continue
        value = inline if equals else (argv[i + 1] if i + 1 < len(argv) else "")
        if canonical in seen:
            parser.error(f"argument {canonical}: given twice ({seen[canonical]}, then {value}); give it once")
        seen[canonical] = value
    return parser.parse_args(argv)


def _long_options(parser: argparse.ArgumentParser, argv: list[str]) -> dict[str, tuple[str, bool]]:
    """Every long flag of ``parser``, and of the subcommand ``argv`` names: {flag: (its longest name, whether it
    takes one value that a second would replace)}."""
    options = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            command = next((word for word in argv if word in action.choices), None)
            if command is not None:
                options.update(_long_options(action.choices[command], argv))
        elif action.option_strings:
            longest = max(action.option_strings, key=len)
            takes_value = action.nargs != 0 and not isinstance(action, _REPEATABLE)
            options.update({option: (longest, takes_value) for option in action.option_strings
                            if option.startswith("--")})
    return options


def run(parser: argparse.ArgumentParser, main, argv=None) -> int:
    """Parse ``argv`` (a flag given twice is refused) and call ``main(args)``; its return value (None: 0) is the
    exit status."""
    args = parse(parser, argv)
    try:
        return main(args) or 0
    except BrokenPipeError:  # the output was piped into a reader that stopped (`| head`): nothing to say
        sys.stderr.close()
        return 0
    except EXPECTED as error:
        if getattr(args, "verbose", False):
            traceback.print_exc()
        print(f"error: {sentence(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
