"""Responsiveness figures (policy.responsiveness): reply rate within 24 h and first-response
times, from exchanges worked out by hand from a scripted conversation."""

from __future__ import annotations

from policy.responsiveness import DAY_MS, Exchange, Responsiveness, responsiveness

MINUTE, HOUR = 60_000, 3_600_000
NOW = 1_800_000_000_000


def test_a_scripted_conversation_gives_the_hand_computed_figures() -> None:
    # Day -10, 09:00  buyer asks               09:30  seller answers     (30 min)
    # Day -9,  09:00  buyer asks; 09:10 again  11:00  seller answers     (2 h, from the first)
    # Day -8,  09:00  buyer asks               day -7, 10:00 answer      (25 h: late)
    # Day -7,  12:00  buyer asks               never answered            (a miss: > 24 h old)
    # 2 h ago         buyer asks               not answered yet          (pending)
    day = DAY_MS
    exchanges = [
        Exchange(NOW - 10 * day, NOW - 10 * day + 30 * MINUTE),
        Exchange(NOW - 9 * day, NOW - 9 * day + 2 * HOUR),
        Exchange(NOW - 8 * day, NOW - 8 * day + 25 * HOUR),
        Exchange(NOW - 7 * day + 3 * HOUR, None),
        Exchange(NOW - 2 * HOUR, None),
    ]
    figures = responsiveness(exchanges, NOW)
    assert figures == Responsiveness(
        exchanges=5,
        answered=3,
        answered_within_24h=2,  # 30 min and 2 h; 25 h is late
        pending=1,
        reply_rate_24h=0.5,  # 2 in time of 4 counted (the pending one left out)
        median_response_seconds=7200.0,  # of 1800, 7200, 90000
        mean_response_seconds=33000.0,  # 99000 / 3
    )


def test_nothing_to_count_yet() -> None:
    assert responsiveness([], NOW) == Responsiveness(0, 0, 0, 0, None, None, None)
    only_pending = responsiveness([Exchange(NOW - HOUR, None)], NOW)
    assert (only_pending.pending, only_pending.reply_rate_24h) == (1, None)
    assert only_pending.median_response_seconds is None


def test_the_24_hour_bounds() -> None:
    # Answered exactly 24 h later: in time. Unanswered for exactly 24 h: still pending (an
    # answer now would be in time); one millisecond older, a miss.
    exchanges = [Exchange(NOW - 2 * DAY_MS, NOW - DAY_MS), Exchange(NOW - DAY_MS, None)]
    figures = responsiveness(exchanges, NOW)
    assert (figures.answered_within_24h, figures.pending, figures.reply_rate_24h) == (1, 1, 1.0)
    figures = responsiveness([exchanges[0], Exchange(NOW - DAY_MS - 1, None)], NOW)
    assert (figures.pending, figures.reply_rate_24h) == (0, 0.5)


def test_an_even_number_of_answers_has_the_middle_two_averaged_as_median() -> None:
    exchanges = [
        Exchange(NOW - 5 * DAY_MS, NOW - 5 * DAY_MS + 10 * MINUTE),
        Exchange(NOW - 4 * DAY_MS, NOW - 4 * DAY_MS + 20 * MINUTE),
        Exchange(NOW - 3 * DAY_MS, NOW - 3 * DAY_MS + 40 * MINUTE),
        Exchange(NOW - 2 * DAY_MS, NOW - 2 * DAY_MS + 10 * HOUR),
    ]
    figures = responsiveness(exchanges, NOW)
    assert figures.median_response_seconds == 1800.0  # (1200 + 2400) / 2
    assert figures.mean_response_seconds == 10050.0  # (600 + 1200 + 2400 + 36000) / 4
    assert figures.reply_rate_24h == 1.0


def test_the_rate_is_rounded_to_four_places() -> None:
    answered = Exchange(NOW - 3 * DAY_MS, NOW - 3 * DAY_MS + HOUR)
    missed = Exchange(NOW - 2 * DAY_MS, None)
    figures = responsiveness([answered, missed, missed], NOW)
    assert figures.reply_rate_24h == 0.3333
