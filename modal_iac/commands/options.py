"""The command-line options several commands share, and the values they ask for.

Argparse only at import: building the parser (``modaliac --help``) must stay light.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..plan.costs import Costing


def state_option(parser: argparse.ArgumentParser, *, lock: bool = False) -> None:
    """``--state``, and ``--lock-timeout`` for the commands that write the state."""
    parser.add_argument(
        "--state",
        help="state file, or modal:VOLUME for state kept on Modal (default: $MODALIAC_STATE, "
        "else .modaliac/state.json at the project root)",
    )
    if lock:
        parser.add_argument(
            "--lock-timeout",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="wait this long for another apply to release the state (default: fail at once)",
        )


def env_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env",
        metavar="NAME",
        type=environment_name,
        help="apply the spec's environments: NAME overrides (NAME is also the Modal "
        "environment unless the override sets one; a spec without environments: deploys to "
        "NAME); without it, specs load their base",
    )


def app_env_option(parser: argparse.ArgumentParser) -> None:
    """``--env`` of the commands that name one app: its Modal environment (a spec path
    target: that spec's environments: entry, as ``env_option``)."""
    parser.add_argument(
        "--env",
        metavar="NAME",
        type=environment_name,
        help="Modal environment of the app (for a spec: its environments: entry); default: "
        "the Modal profile's environment",
    )


def environment_name(text: str) -> str:
    from ..spec.address import AddressError, check_environment

    try:
        return check_environment(text, "--env")
    except AddressError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--env: ")) from None


def lifecycle_options(parser: argparse.ArgumentParser) -> None:
    """``--replace`` and ``--refresh-only``, shared by plan and apply (Terraform's names)."""
    parser.add_argument(
        "--replace",
        action="append",
        metavar="ADDRESS",
        help="redeploy this app even if nothing changed, so Modal takes a new snapshot (after "
        "a moving revision changed, say); repeat for several",
    )
    parser.add_argument(
        "--refresh-only",
        action="store_true",
        help="deploy nothing: record what Modal runs (hand-made changes, a hotfix, a stopped "
        "app) into the state",
    )
    parser.add_argument(
        "--strategy",
        choices=("rolling", "recreate"),
        help="how every app of this run is deployed, over each spec's deploy.strategy: "
        "rolling (new containers take over as old ones drain) or recreate (the running "
        "containers are stopped as the new version is published; the way out at max_containers)",
    )
    parser.add_argument(
        "--verify",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after each deploy, send one real request and roll the app back unless it is "
        "answered (over each spec's verify.enabled; --no-verify turns it off)",
    )


def progress_options(parser: argparse.ArgumentParser, *, logs: bool = False) -> None:
    """How a command that changes Modal shows its progress (see progress.py)."""
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per event per line on stdout (app, phase, elapsed, status), for "
        "CI; everything else goes to stderr (needs --yes where the command asks)",
    )
    if logs:
        parser.add_argument(
            "--logs",
            action="store_true",
            help="stream Modal's image build output (it is always kept in "
            ".modaliac/logs/ADDRESS.log)",
        )


def cost_options(parser: argparse.ArgumentParser) -> None:
    """``--prices`` and ``--active-hours-per-day``, shared by plan and explain."""
    parser.add_argument(
        "--prices",
        metavar="FILE",
        help="a JSON price table whose rows replace the bundled ones (or $MODALIAC_PRICES)",
    )
    parser.add_argument(
        "--active-hours-per-day",
        type=hours_value,
        metavar="HOURS",
        help="estimate each app's month with one container per pool busy this many hours a "
        "day (overrides the specs' usage.active_hours_per_day)",
    )


def costing(args: argparse.Namespace) -> Costing:
    """The pricing the cost options ask for."""
    from ..plan.costs import Costing
    from ..review.cost import load_prices

    return Costing(load_prices(args.prices), args.active_hours_per_day)


def modal_costing(pricing: Costing, args: argparse.Namespace) -> Costing:
    """``pricing`` with Modal's own rates over the shipped table (``rates.py``)."""
    from dataclasses import replace

    from ..modal.rates import current_prices

    return replace(pricing, prices=current_prices(pricing.prices, args.prices))


def seconds_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def hours_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected hours, got {text!r}") from None
    if not 0 <= value <= 24:
        raise argparse.ArgumentTypeError(f"expected 0 to 24 hours, got {text!r}")
    return value


def app_version(text: str) -> int:
    """``v2`` or ``2``: a deployed version of an app, as Modal numbers them (from 1)."""
    number = text[1:] if text[:1] in ("v", "V") else text
    if not number.isdigit() or int(number) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a version: write it as v2 or 2")
    return int(number)


def env_var_name(text: str) -> str:
    """``--api-key-env VAR``: a variable name a shell can export, so no message or header
    quotes anything but a name."""
    from ..spec.fields import ENV_VAR
    from ..tokens import shown

    if not ENV_VAR.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{shown(text)} is not an environment variable name: use letters, digits and '_', "
            "not starting with a digit"
        )
    return text
