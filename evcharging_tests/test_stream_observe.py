"""The topic observer's arithmetic: the stream's positions from its ingest commits, lag, events/s."""

from __future__ import annotations

from evcharging.stream_observe import (
    ObserverState, TopicOffsets, advance_positions, consumer_lag, events_per_second, offsets_table,
)


def test_positions_follow_the_largest_end_committed_per_partition():
    positions = advance_positions({}, {"0": [0, 100], "2": [0, 40]})
    positions = advance_positions(positions, {"0": [100, 180]})
    assert positions == {0: 180, 2: 40}
    assert advance_positions(positions, {"0": [50, 120]}) == positions  # a replayed range moves nothing


def test_lag_counts_what_the_stream_has_not_committed():
    offsets = TopicOffsets(beginning={0: 0, 1: 0, 2: 30}, end={0: 200, 1: 50, 2: 90})
    # partition 1 never read: all of it; partition 2 starts at what retention kept, not at 0
    assert consumer_lag(offsets, {0: 180}) == {0: 20, 1: 50, 2: 60}
    assert consumer_lag(offsets, {0: 200, 1: 50, 2: 90}) == {0: 0, 1: 0, 2: 0}
    assert offsets.records == 310 and offsets.produced == 340


def test_events_per_second_between_observations():
    assert events_per_second(ObserverState(), produced=500, now=10.0) is None  # the first observation
    assert events_per_second(ObserverState(produced=100, at=10.0), produced=1100, now=30.0) == 50.0
    assert events_per_second(ObserverState(produced=100, at=10.0), produced=100, now=30.0) == 0.0


def test_the_cursor_round_trips():
    state = ObserverState(tag="ingested-events-0000000007", positions={0: 5, 3: 9}, produced=14, at=123.5)
    assert ObserverState.from_cursor(state.to_cursor()) == state
    assert ObserverState.from_cursor(None) == ObserverState()


def test_offsets_table_has_a_row_per_partition():
    table = offsets_table(TopicOffsets({0: 0, 1: 0}, {0: 1200, 1: 7}), {0: 1000})
    rows = table.splitlines()[2:]
    assert rows == ["| 0 | 0 | 1,200 | 1,000 | 200 |", "| 1 | 0 | 7 | 0 | 7 |"]
