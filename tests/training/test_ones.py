"""MNIST's bare 1s given a flag (training/ones.py): only 1s, only ink added, where a flag goes."""

from __future__ import annotations

import torch

from training.batches import BatchMaker, standardise
from training.ones import flag_ones

SIDE = 28


def bare_one(column: int = 14, top: int = 4, bottom: int = 23, width: int = 2) -> torch.Tensor:
    """An upright 1 as MNIST holds it: a vertical stroke, white on black, (1, 28, 28)."""
    image = torch.zeros(1, SIDE, SIDE)
    image[0, top : bottom + 1, column - width // 2 : column - width // 2 + width] = 1.0
    return image


def test_only_ones_get_ink_and_only_ink_is_added() -> None:
    x = torch.stack([bare_one(), bare_one(), bare_one()])
    y = torch.tensor([1, 7, 1])
    out = flag_ones(x, y, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(out[1], x[1])  # a 7 (whatever it shows) is left alone
    for i in (0, 2):
        assert bool((out[i] >= x[i]).all()) and float(out[i].max()) <= 1.0
        assert float((out[i] - x[i]).sum()) > 2.0  # a stroke of a few pixels was drawn
    assert torch.equal(x, torch.stack([bare_one(), bare_one(), bare_one()]))  # input untouched


def test_the_flag_runs_down_left_from_the_top() -> None:
    x, y = bare_one().unsqueeze(0), torch.tensor([1])
    for seed in range(10):
        added = (flag_ones(x, y, 1.0, torch.Generator().manual_seed(seed)) - x)[0, 0]
        rows, cols = torch.nonzero(added > 0.5, as_tuple=True)
        upper = rows < 14
        assert bool(upper.any())
        # The flag's ink lies left of the stem and within the upper half of the 1.
        assert int(cols[upper].max()) <= 15 and int(cols[upper].min()) < 12
        assert int(rows[upper].min()) >= 3


def test_share_and_seed_decide_which_ones_change() -> None:
    x = torch.stack([bare_one()] * 200)
    y = torch.ones(200, dtype=torch.long)

    def changed(share: float, seed: int) -> torch.Tensor:
        out = flag_ones(x, y, share, torch.Generator().manual_seed(seed))
        return (out != x).flatten(1).any(dim=1)

    assert not bool(changed(0.0, 1).any())
    picked = changed(0.3, 1)
    assert 30 <= int(picked.sum()) <= 90
    assert torch.equal(picked, changed(0.3, 1))  # seeded: the same 1s again
    assert not torch.equal(picked, changed(0.3, 2))


def test_a_one_leaning_back_or_a_speck_is_left_alone() -> None:
    back = torch.zeros(1, SIDE, SIDE)
    for row in range(4, 24):  # top at column 8, foot at column 18: leaning back
        column = 8 + (row - 4) // 2
        back[0, row, column : column + 2] = 1.0
    speck = torch.zeros(1, SIDE, SIDE)
    speck[0, 12:15, 12:15] = 1.0
    x, y = torch.stack([back, speck]), torch.tensor([1, 1])
    assert torch.equal(flag_ones(x, y, 1.0, torch.Generator().manual_seed(0)), x)


def test_batch_maker_flags_the_batch_ones_when_asked() -> None:
    x = torch.stack([bare_one()] * 4)
    y = torch.tensor([1, 3, 1, 3])

    def batch(share: float) -> torch.Tensor:
        maker = BatchMaker(x, y, 4, torch.Generator().manual_seed(0), flagged_ones=share)
        return maker.make(torch.arange(4), 0).x

    plain, flagged = batch(0.0), batch(1.0)
    assert torch.equal(plain, standardise(x))  # off: the batch is MNIST's own digits
    changed = (flagged != plain).flatten(1).any(dim=1)
    assert changed.tolist() == [True, False, True, False]
