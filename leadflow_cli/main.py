"""`leadflow` command line: arguments, dispatch to a command, errors shown as one line each."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

from leadflow_cli import commands
from leadflow_cli.client import DEFAULT_URL, Client
from leadflow_cli.errors import EXIT_OK, CliError
from leadflow_cli.export import FORMATS

Command = Callable[[argparse.Namespace, Client], int]
JOB_STATES = (
    "queued",
    "waiting",
    "running",
    "paused",
    "completed",
    "failed",
    "cancelled",
    "timed_out",
)
PRIORITIES = ("high", "normal", "low")
EPILOG = """\
environment: LEADFLOW_URL (default %(url)s), LEADFLOW_API_KEY
exit codes: 0 done; 1 the followed job failed, was cancelled or timed out;
  2 a mistake to fix (arguments, lead file, a request the gateway refused);
  3 the gateway is unreachable or failed
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # bad arguments: usage and exit 2 (argparse)
    try:
        client = Client(args.url, args.api_key)
        code: int = args.run(args, client)
    except CliError as e:
        print(f"leadflow: error: {e.message}", file=sys.stderr)
        for line in e.details:
            print(f"  {line}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return commands.EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`leadflow jobs | head -1`): nothing left to say to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leadflow",
        description="Submit and follow leadflow jobs through the gateway's HTTP API.",
        epilog=EPILOG % {"url": DEFAULT_URL},
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=version())
    add_connection(parser, defaults=True)
    sub = parser.add_subparsers(metavar="COMMAND", required=True)
    add_enrich(sub)
    add_scrape(sub)
    add_jobs(sub)
    job_command(sub, "status", "show a job's state, progress and deliveries", commands.status)
    job_command(sub, "cancel", "cancel a job", commands.cancel)
    job_command(sub, "resume", "resume a job paused by a credit budget", commands.resume)
    job_command(
        sub, "rerun", "enrich a finished job's leads again (missing fields)", commands.rerun
    )
    add_export(sub)
    add_daily(sub)
    add_schedules(sub)
    for command in sub.choices.values():
        add_connection(command, defaults=False)
    return parser


def add_connection(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """--url/--api-key, before or after the command (a command's copy keeps no default, so
    it does not overwrite a value given before the command)."""
    url = os.environ.get("LEADFLOW_URL") or DEFAULT_URL
    key = os.environ.get("LEADFLOW_API_KEY") or None
    parser.add_argument(
        "--url",
        default=url if defaults else argparse.SUPPRESS,
        help=f"the gateway (default: $LEADFLOW_URL, else {DEFAULT_URL})",
    )
    parser.add_argument(
        "--api-key",
        default=key if defaults else argparse.SUPPRESS,
        help="API key (default: $LEADFLOW_API_KEY, which keeps it out of the process list)",
    )


def add_enrich(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    enrich = sub.add_parser(
        "enrich",
        help="enrich the leads of a CSV, JSON or NDJSON file",
        description="Columns are matched loosely ('Full Name', 'LinkedIn', 'E-mail'...); "
        "others are ignored with a warning.",
    )
    enrich.add_argument("file", metavar="FILE", help="the lead file (.csv, .json, .ndjson)")
    add_destinations(enrich)
    enrich.add_argument("--priority", choices=PRIORITIES)
    enrich.add_argument("--follow", action="store_true", help="show progress until the job ends")
    add_max_credits(enrich)
    enrich.add_argument(
        "--dry-run", action="store_true", help="print the expected credits; create no job"
    )
    enrich.set_defaults(run=commands.enrich)


def add_max_credits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-credits", type=int, metavar="N", help="the job's credit budget (pauses there)"
    )


def add_scrape(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    scrape = sub.add_parser("scrape", help="scrape leads from a lead search source")
    add_search(scrape)
    scrape.add_argument("--follow", action="store_true", help="show progress until the job ends")
    scrape.set_defaults(run=commands.scrape)


def add_search(scrape: argparse.ArgumentParser) -> None:
    """A scrape job's arguments (`scrape`, `schedules create`)."""
    scrape.add_argument("--source", required=True, help="the lead source, e.g. sandbox")
    scrape.add_argument("--keywords", required=True, help="the search keywords")
    scrape.add_argument("--geo", help="where the leads are, e.g. London")
    scrape.add_argument("--max-pages", type=positive_int, metavar="N")
    scrape.add_argument("--max-leads", type=positive_int, metavar="N")
    scrape.add_argument("--enrich", action="store_true", help="enrich each lead as it arrives")
    add_destinations(scrape)
    scrape.add_argument("--priority", choices=PRIORITIES)


def add_destinations(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--webhook", metavar="URL", help="POST result batches to this URL")
    parser.add_argument("--webhook-secret", metavar="S", help="sign webhook batches with S")
    parser.add_argument("--csv", metavar="NAME", help="also write the results to NAME.csv")


def add_jobs(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    jobs = sub.add_parser("jobs", help="list your jobs, newest first")
    jobs.add_argument("--state", choices=JOB_STATES)
    jobs.add_argument("--kind", choices=("enrich", "scrape"))
    jobs.add_argument("--limit", type=positive_int, default=20, metavar="N", help="at most 200")
    jobs.add_argument("--json", action="store_true", help="print the API's JSON")
    jobs.set_defaults(run=commands.jobs)


def job_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    run: Command,
) -> None:
    command = sub.add_parser(name, help=help_text)
    command.add_argument("job_id", metavar="ID")
    if name == "status":
        command.add_argument("--json", action="store_true", help="print the API's JSON")
    if name in ("resume", "rerun"):
        add_max_credits(command)
    if name == "rerun":
        command.add_argument("--follow", action="store_true", help="follow the new job")
    command.set_defaults(run=run)


def add_export(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = sub.add_parser("export", help="save a job's result leads as CSV, JSON or NDJSON")
    export.add_argument("job_id", metavar="ID")
    export.add_argument(
        "-o", "--output", default="-", metavar="FILE", help="where to write (default: stdout)"
    )
    export.add_argument(
        "--format", choices=FORMATS, help="default: from the file's extension, else csv"
    )
    export.add_argument("--status", choices=("enriched", "failed"), help="only these leads")
    export.set_defaults(run=commands.export)


def add_daily(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    daily = sub.add_parser(
        "daily", help="save a UTC day's results across your jobs (latest outcome per lead)"
    )
    daily.add_argument("date", metavar="YYYY-MM-DD")
    daily.add_argument(
        "-o", "--output", default="-", metavar="FILE", help="where to write (default: stdout)"
    )
    daily.add_argument(
        "--format", choices=FORMATS, help="default: from the file's extension, else csv"
    )
    daily.set_defaults(run=commands.daily)


def add_schedules(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schedules = sub.add_parser("schedules", help="saved searches: scrapes run on a schedule")
    actions = schedules.add_subparsers(metavar="ACTION", required=True)
    create = actions.add_parser("create", help="save a search; its first run starts now")
    timing = create.add_mutually_exclusive_group(required=True)
    timing.add_argument("--every", type=positive_int, metavar="SECONDS", help="run every N s")
    timing.add_argument("--cron", metavar="EXPR", help="run at each cron time (UTC)")
    create.add_argument(
        "--only-new", action="store_true", help="deliver only leads no earlier run delivered"
    )
    add_search(create)
    create.set_defaults(run=commands.schedule_create)
    listed = actions.add_parser("list", help="your saved searches, newest first")
    listed.add_argument("--json", action="store_true", help="print the API's JSON")
    listed.set_defaults(run=commands.schedule_list)
    show = actions.add_parser("show", help="a saved search and its runs")
    show.add_argument("schedule_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="print the API's JSON")
    show.set_defaults(run=commands.schedule_show)
    delete = actions.add_parser("delete", help="stop a saved search (its jobs stay)")
    delete.add_argument("schedule_id", metavar="ID")
    delete.set_defaults(run=commands.schedule_delete)
    for action in actions.choices.values():
        add_connection(action, defaults=False)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {value}")
    return value


def version() -> str:
    try:
        return f"leadflow {metadata.version('leadflow')}"
    except metadata.PackageNotFoundError:
        return "leadflow (not installed)"
