"""Each task's default memory layout (Task.channels_last_on) follows the committed step timings."""
import json
import math
from pathlib import Path

import pytest

from tasks.common.task import get_task

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "results" / "bench" / "vs_official.json"
MARGIN = 0.95   # channels_last becomes the default only where it is at least 5% faster: NCHW is the safer layout


def layout_choices(rows) -> dict:
    """(task, device) -> whether channels_last wins: the geometric mean over the task's rows (the GAN has
    two) of channels_last / NCHW step time is at most MARGIN."""
    ratios = {}
    for r in rows:
        by = r.get("ours_s_by_layout", {})
        if {"nchw", "channels_last"} <= set(by):
            ratios.setdefault((r["preset"].split("/")[0], r["device"]), []).append(by["channels_last"] / by["nchw"])
    return {key: math.exp(sum(map(math.log, v)) / len(v)) <= MARGIN for key, v in ratios.items()}


def test_layout_choice_rule():
    rows = [{"preset": "gan/a", "device": "cpu", "ours_s_by_layout": {"nchw": 1.0, "channels_last": 0.9}},
            {"preset": "gan/b", "device": "cpu", "ours_s_by_layout": {"nchw": 1.0, "channels_last": 0.98}},
            {"preset": "adv/p", "device": "cpu", "ours_s_by_layout": {"nchw": 1.0, "channels_last": 0.97}},
            {"preset": "nas/p", "device": "cpu", "ours_s": 1.0}]
    assert layout_choices(rows) == {("gan", "cpu"): True, ("adv", "cpu"): False}


def test_task_defaults_follow_the_committed_timings():
    if not BENCH.is_file():
        pytest.skip(f"{BENCH} not committed")
    choices = layout_choices(json.loads(BENCH.read_text())["rows"])
    if not choices:
        pytest.skip(f"{BENCH} times one layout only")
    for (task, device), wins in choices.items():
        assert bool(get_task(task).channels_last_on.get(device)) == wins, (
            f"{task} on {device}: channels_last {'wins' if wins else 'does not win'} in {BENCH.name}; "
            f"set Task.channels_last_on accordingly (and pin trainer.channels_last in presets with committed results)")
