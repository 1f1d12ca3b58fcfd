"""`evcharging` — the project's command line: the local stack and the Dagster UI.

    evcharging stack install | up | down | status | logs SERVICE [-n N]
    evcharging demo           the local stack end to end, then the Dagster UI
    evcharging sql "SELECT …" your own query on the warehouse
    evcharging dev            serve the Dagster UI (`dagster dev`) on the local instance
"""

from __future__ import annotations

import argparse
import signal
import sys
from urllib.parse import urlparse

from rich.console import Console
from rich.table import Table

from evcharging.settings import MissingSettingError, Settings, load_settings
from evcharging.stack.process import StackError

console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)


def _say(message: str) -> None:
    console.print(f"[dim]·[/dim] {message}")


def _print_status(rows) -> None:
    table = Table(title="EVCharging local stack")
    for col in ("service", "state", "pid", "endpoint"):
        table.add_column(col)
    colour = {"healthy": "green", "ready": "green", "unhealthy": "red", "stopped": "yellow"}
    for r in rows:
        table.add_row(r.name, f"[{colour[r.state]}]{r.state}[/]", str(r.pid or ""), r.endpoint)
    Console(width=None if sys.stdout.isatty() else 120).print(table)


def cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    from evcharging.stack import stack

    if args.action == "install":
        for name, seconds in stack.install(settings, _say).items():
            console.print(f"  {name:<12} {seconds:6.1f}s")
        return 0
    if args.action == "up":
        rows = stack.up(settings, _say)
        _print_status(rows)
        console.print(f"logs: {settings.logs_dir}   data: {settings.data_dir}   stop: evcharging stack down")
        return 0
    if args.action == "down":
        stopped = stack.down(settings, _say)
        console.print(f"stopped {len(stopped)} service(s)")
        return 0
    if args.action == "status":
        rows = stack.status(settings)
        _print_status(rows)
        return 0 if all(r.ok for r in rows) else 1
    if args.action == "logs":
        if not args.service:
            raise StackError("stack", "`logs` needs a SERVICE name")
        proc = stack.service(settings, args.service).process(settings)
        print(proc.log_tail(args.lines))
        return 0
    raise AssertionError(args.action)


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    from evcharging.dagster_dev import DagsterDev

    dev = DagsterDev(settings, args.port or urlparse(settings.dagster_url).port or 3000)
    console.print(f"Dagster UI: http://127.0.0.1:{dev.port}  (DAGSTER_HOME={dev.env['DAGSTER_HOME']}; Ctrl-C stops it)")
    dev.start(_say)
    try:
        return dev.wait()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (see main)
        dev.stop(_say)
        return 130


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from evcharging.demo import DemoError, run_demo
    from evcharging.stack import stack

    _print_status(stack.up(settings, _say))
    settings = load_settings()  # with the secrets `up` generated on a first run
    try:
        return run_demo(settings, _say, vehicles=args.vehicles, hours=args.hours, seed=args.seed)
    except DemoError as err:
        console.print(f"[red]demo failed:[/red] {err}")
        return 1


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    from evcharging.resources.from_settings import warehouse_resource

    # chDB admits one process at a time: while a load holds it, wait (saying so) rather than fail.
    with warehouse_resource(settings).connect(on_wait=_say) as wh:
        frame = wh.query_df(args.query)
    Console(width=None if sys.stdout.isatty() else 160).print(frame.to_string(index=False, max_rows=args.max_rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evcharging", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    st = sub.add_parser("stack", help="install, start, stop and inspect the native local stack")
    st.add_argument("action", choices=["install", "up", "down", "status", "logs"])
    st.add_argument("service", nargs="?", help="for `logs`: postgres, ferretdb, minio, lakefs, kafka "
                                                "(cluster mode: spark-master, spark-worker-0 …)")
    st.add_argument("-n", "--lines", type=int, default=50, help="for `logs`: how many lines")
    st.set_defaults(func=cmd_stack)
    dev = sub.add_parser("dev", help="serve the Dagster UI on the project's local instance")
    dev.add_argument("--port", type=int, help="default: the port of EVCHARGING_DAGSTER_URL (3000)")
    dev.set_defaults(func=cmd_dev)
    demo = sub.add_parser("demo", help="start the stack, run the pipeline end to end, serve the Dagster UI")
    demo.add_argument("--vehicles", type=int, default=3000, help="fleet size (default 3000)")
    demo.add_argument("--hours", type=float, default=6, help="simulated hours of arrivals (default 6)")
    demo.add_argument("--seed", type=int, help="simulator seed (default: a new one per run)")
    demo.set_defaults(func=cmd_demo)
    sql = sub.add_parser("sql", help="run your own SQL on the warehouse (ClickHouse / chDB) and print the result")
    sql.add_argument("query", help='e.g. "SELECT * FROM evcharging.fact_charging_sessions FINAL LIMIT 10"')
    sql.add_argument("--max-rows", type=int, default=100)
    sql.set_defaults(func=cmd_sql)
    return parser


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM stops as Ctrl-C does: every command cleans up the same way


def sigterm_as_interrupt() -> None:
    signal.signal(signal.SIGTERM, _interrupt)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sigterm_as_interrupt()
    try:
        return args.func(args, load_settings())
    except (StackError, MissingSettingError) as err:
        console.print(f"[red]error:[/red] {err}")
        return 1
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
