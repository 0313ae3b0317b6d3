"""``python -m modal_iac.local_api [--port N] [--rpc-delay SECONDS] [--secret NAME[=KEY,...] ...]``:
serve until Ctrl-C.

Prints the ``export`` lines that point the ``modal`` CLI at it, for a person to try
``modal deploy``, ``modal app list`` and friends with no account and no network.
"""

from __future__ import annotations

import argparse
import math
import sys

from .server import LocalModalServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modal_iac.local_api", description=__doc__)
    parser.add_argument(
        "--port", type=int, default=0, help="port to listen on (default: a free one)"
    )
    parser.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="NAME[=KEY,...]",
        help="pre-create a secret holding these key names (default: VALUE); repeatable. An "
        "HTTP endpoint's secret needs its api_key_env: --secret kalm-api-key=VLLM_API_KEY",
    )
    parser.add_argument(
        "--rpc-delay",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="delay every RPC this long, like a network round trip (0.05: 50 ms; default 0)",
    )
    args = parser.parse_args(argv)
    server = LocalModalServer(port=args.port, rpc_delay=args.rpc_delay)
    for given in args.secret:
        name, _, keys = given.partition("=")
        server.state.add_secret(name, tuple(k for k in keys.split(",") if k) or ("VALUE",))
    server.start()
    try:  # from here on Ctrl-C is a normal way to stop
        for key, value in server.env().items():
            print(f"export {key}={value}")
        print(f"# local Modal API on {server.url}; Ctrl-C stops it", file=sys.stderr, flush=True)
        sys.stdout.flush()
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, like 0.05, not {text!r}")
    return value


if __name__ == "__main__":
    sys.exit(main())
