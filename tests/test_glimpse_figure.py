"""The glimpse picture: a readable title for the condition, step numbers that never overlap."""

from __future__ import annotations

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg

from mgbench.report.glimpses import GlimpseBatch, condition_title, figure, one_condition


def test_title_writes_eps_as_a_fraction() -> None:
    title = condition_title(one_condition("attack:pgd:4/255"))
    assert title.startswith("pgd linf 4/255") and "0.0156" not in title
    assert condition_title(one_condition("corruption:fog:3")) == "fog s3"


def test_numbers_of_coinciding_boxes_do_not_overlap() -> None:
    """Glimpses 3 and 4 on the same box (as late glimpses often are): their numbers sit apart."""
    steps, n = 4, 2
    boxes = torch.tensor([[0.1, 0.1, 0.9, 0.9], [0.2, 0.2, 0.7, 0.7], [0.3, 0.3, 0.6, 0.6], [0.3, 0.3, 0.6, 0.6]])
    batch = GlimpseBatch(images=torch.rand(n, 3, 64, 64), labels=torch.tensor([1, 2]),
                         predictions=torch.tensor([[1, 2]] * steps), boxes=boxes[:, None].expand(steps, n, 4))
    fig = figure(batch, [str(i) for i in range(10)], "test")
    renderer = FigureCanvasAgg(fig).get_renderer()
    ax = fig.axes[0]
    numbers = {t.get_text(): t.get_window_extent(renderer) for t in ax.texts if t.get_text() in "1234"}
    assert sorted(numbers) == ["1", "2", "3", "4"]
    for a in numbers:
        for b in numbers:
            if a < b:
                assert not numbers[a].overlaps(numbers[b]), (a, b)
