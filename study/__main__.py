"""Entry point: ``python -m study {trial,launch,report} ...`` (see study/cli.py)."""

import signal
import sys

_ctrl_c = []


def _on_ctrl_c(signum, frame):
    _ctrl_c.append(signum)
    raise KeyboardInterrupt


# Ctrl-C while the libraries load (seconds: torch, Ray) ends the command as it does later: "interrupted", exit
# 130. The flag catches a Ctrl-C whose KeyboardInterrupt a library's start-up code swallowed.
signal.signal(signal.SIGINT, _on_ctrl_c)
try:
    from study.cli import main
    if _ctrl_c:
        raise KeyboardInterrupt
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.exit(main())
