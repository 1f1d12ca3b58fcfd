"""`python -m evcharging.streaming` — run the Kafka → lakeFS ingest stream (its own process).

Settings come from the environment (EVCHARGING_*); the options override them for one run.
"""

from __future__ import annotations

import argparse
import logging
import sys

from evcharging.settings import MissingSettingError, load_settings
from evcharging.streaming.batches import BatchConflictError
from evcharging.streaming.job import StreamConfigError, StreamOptions, run
from evcharging.streaming.outage import StreamOutageError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evcharging.streaming", description=__doc__)
    parser.add_argument("--available-now", action="store_true",
                        help="process everything in the topic now (in batches of --max-offsets-per-trigger), then stop")
    parser.add_argument("--trigger-seconds", type=int, help="micro-batch interval (EVCHARGING_STREAM_TRIGGER_SECONDS)")
    parser.add_argument("--max-offsets-per-trigger", type=int,
                        help="records per micro-batch at most (EVCHARGING_STREAM_MAX_OFFSETS_PER_TRIGGER)")
    parser.add_argument("--stream-name", help="names branches and checkpoint (EVCHARGING_STREAM_NAME)")
    parser.add_argument("--topic", help="Kafka topic (EVCHARGING_KAFKA_EVENTS_TOPIC)")
    parser.add_argument("--checkpoint", help="checkpoint folder or URI, e.g. s3a://checkpoints/events "
                        "(default <EVCHARGING_SPARK_CHECKPOINT_DIR>/<stream name>)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        options = StreamOptions.from_settings(
            settings, stream_name=args.stream_name, checkpoint=args.checkpoint,
            available_now=args.available_now or None, trigger_seconds=args.trigger_seconds,
            max_offsets_per_trigger=args.max_offsets_per_trigger, topic=args.topic)
        run(settings, options)
    except (StreamConfigError, MissingSettingError, BatchConflictError, StreamOutageError) as err:
        print(f"stream: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
