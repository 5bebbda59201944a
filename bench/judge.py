"""7. Judging a message: every content rule over one message of up to the homeserver's largest
event (64 KiB), as the Synapse module does before delivery and the bot after it.

    inputs shaped to be costly (long digit runs with separators, dots, at-signs, emoji
    between digits, number words, mixed scripts, one long word, a large HTML body, ordinary
    chat) -> judge_event and mask_content, each timed several times -> the slowest

Target: the slowest input judged (and masked) in 50 ms on this machine, each input's time the
median of its runs (a figure of the work, not of the scheduler). Every content, HTML included,
fits in the homeserver's largest event (64 KiB of UTF-8 JSON). Baseline in the same run:
parsing the same event's JSON and its HTML body, which every client does anyway.
"""

from __future__ import annotations

import html
import json
import statistics
import time
from collections.abc import Callable

from policy.masking import mask_content
from policy.messages import html_text
from policy.rules import content_rules_from, judge_event
from policy.states import Access

from .env import Env
from .plan import Scale
from .report import Figure, Result, at_most

TARGET_MS = 50.0
SIZE = 64 * 1024 - 512  # bytes of the event's JSON: room left for its other fields


def _fill(unit: str, size: int = SIZE) -> str:
    """``unit`` repeated to ``size`` bytes of JSON (what Synapse measures), no more."""
    text = unit * (size // len(unit.encode()) + 1)
    while len(_json(text)) > size:
        text = text[: -max(1, (len(_json(text)) - size) // 4)]
    return text


def _json(text: str) -> bytes:
    return json.dumps(text, ensure_ascii=False).encode()


INPUTS: dict[str, str] = {
    "digits, spaces": _fill("7 "),
    "digits, commas": _fill("12,"),
    "digits, emoji": _fill("07\U0001f600"),
    "digits, letters": _fill("1a"),
    "dots": _fill("a."),
    "at-signs": _fill("a @ "),
    "number words": _fill("seven twenty one, "),
    "mots": _fill("soixante-dix-huit "),
    "mixed scripts": _fill("\u0430b\u03b1c\u0561d\u2460\u4e03 "),
    "one word": _fill("x"),
    "ordinary chat": _fill("Is it still available? I can pick it up on Friday at 10:30. "),
}


def _content(text: str, as_html: bool) -> dict:
    """A message of ``text``; as HTML, a third of the event is the plain body and the rest the
    HTML body, escaped."""
    if not as_html:
        return {"msgtype": "m.text", "body": text}
    return {
        "msgtype": "m.text",
        "body": _fill(text, SIZE // 3),
        "format": "org.matrix.custom.html",
        "formatted_body": "<p>" + _fill(html.escape(text), 2 * SIZE // 3 - 16) + "</p>",
    }


def _median_ms(work: Callable[[], object], times: int) -> float:
    runs = []
    for _ in range(times):
        started = time.perf_counter()
        work()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs) * 1000


async def run(env: Env, scale: Scale) -> Result:
    result = Result("judge")
    rules = content_rules_from(env.bridge_config("sqlite:unused.db").policy.model_dump())
    times = scale.judge_repeats
    meter = env.meter()  # the driver judges in its own process; Synapse idles
    meter.start()
    worst = {"judge": (0.0, ""), "mask": (0.0, ""), "baseline": (0.0, "")}
    for name, text in INPUTS.items():
        for as_html in (False, True):
            content = _content(text, as_html)
            label = f"{name}{' (HTML)' if as_html else ''}"
            measured = {
                "judge": _median_ms(
                    lambda content=content: judge_event(
                        "m.room.message",
                        content,
                        rules,
                        Access.OPEN,
                        transaction_closed=False,
                        recent_messages=1,
                        muted=False,
                    ),
                    times,
                ),
                "mask": _median_ms(lambda content=content: mask_content(content, rules), times),
                "baseline": _median_ms(
                    lambda content=content: html_text(
                        json.loads(json.dumps(content)).get("formatted_body", "")
                    ),
                    times,
                ),
            }
            for kind, ms in measured.items():
                if ms > worst[kind][0]:
                    worst[kind] = (ms, label)
    result.cpu_seconds = meter.stop()
    result.figures = [
        at_most("slowest message judged", worst["judge"][0], "ms", TARGET_MS),
        at_most("slowest message masked", worst["mask"][0], "ms", TARGET_MS),
        Figure("baseline: JSON and HTML parsed", worst["baseline"][0], "ms"),
    ]
    result.notes = (
        f"{len(INPUTS) * 2} messages of up to {SIZE} bytes, each timed {times} times; slowest "
        f"judged: {worst['judge'][1]}; slowest masked: {worst['mask'][1]}"
    )
    return result
