"""The stream's outage watch: it backs off with one log line per attempt while a service is down,
returns once every service answers, and past the window gives up with one message naming the
service and the setting."""

from __future__ import annotations

import logging

import pytest

from evcharging.streaming.outage import OutageWatch, Service, StreamOutageError, backoff_delays


class FakeTime:
    def __init__(self):
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _lakefs(up_after: float, time: FakeTime) -> Service:
    return Service("lakeFS", "EVCHARGING_LAKEFS_ENDPOINT", "http://lakefs:8000", lambda: time.now >= up_after)


def test_backoff_doubles_up_to_the_cap():
    delays = backoff_delays(first=1, cap=30)
    assert [next(delays) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_waits_with_one_line_per_attempt_until_the_service_is_back(caplog):
    time = FakeTime()
    watch = OutageWatch([_lakefs(up_after=10, time=time)], window_s=300, clock=time.clock, sleep=time.sleep)
    with caplog.at_level(logging.WARNING, logger="evcharging.streaming"):
        watch.wait_until_up("Connection refused")
    waits = [r.message for r in caplog.records if "is unreachable" in r.message]
    assert len(waits) == 4 and "lakeFS at EVCHARGING_LAKEFS_ENDPOINT=http://lakefs:8000" in waits[0]  # 1+2+4+8 s
    assert time.now == 15
    watch.over()
    assert watch.began is None and watch.attempts == 0


def test_past_the_window_one_error_names_the_service_and_the_setting():
    time = FakeTime()
    watch = OutageWatch([_lakefs(up_after=10_000, time=time)], window_s=60, clock=time.clock, sleep=time.sleep)
    with pytest.raises(StreamOutageError, match=r"lakeFS at EVCHARGING_LAKEFS_ENDPOINT=http://lakefs:8000 has been "
                                                r"unreachable for \d+ s, longer than EVCHARGING_STREAM_OUTAGE_WINDOW_SECONDS=60"):
        watch.wait_until_up("Connection refused")
    assert 60 < time.now < 62


def test_py4j_tracebacks_of_outages_are_left_to_the_stream_and_others_kept():
    import sys

    from evcharging.streaming.job import _TransientCallbackErrors

    def record(exc: BaseException) -> logging.LogRecord:
        try:
            raise exc
        except BaseException:
            return logging.LogRecord("py4j.clientserver", logging.ERROR, __file__, 1,
                                     "There was an exception while executing the Python Proxy", None, sys.exc_info())

    keep = _TransientCallbackErrors().filter
    assert not keep(record(ConnectionRefusedError(111, "Connection refused")))
    assert keep(record(ValueError("a bug in the batch function")))
