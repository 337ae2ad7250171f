"""Temporal windows: every frame once, reflection at both ends, bounded memory."""
from __future__ import annotations

import weakref

import pytest

from vderain.io import batched, iter_windows, reflect_index


def test_reflect_index():
    assert [reflect_index(j, 5) for j in range(-4, 9)] == [4, 3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1, 0]
    assert [reflect_index(j, 1) for j in (-3, 0, 2)] == [0, 0, 0]
    assert [reflect_index(j, 2) for j in (-2, -1, 0, 1, 2, 3)] == [0, 1, 0, 1, 0, 1]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 20])
@pytest.mark.parametrize("window,target", [(1, 0), (3, 1), (5, 2), (5, 4), (5, 0), (7, 3)])
def test_every_frame_once_with_reflected_neighbours(n, window, target):
    out = list(iter_windows(range(n), window, target))
    assert [t for _, t in out] == list(range(n))  # nothing dropped, nothing duplicated
    for i, (win, t) in enumerate(out):
        assert len(win) == window and win[target] == t
        assert win == [reflect_index(i - target + k, n) for k in range(window)]


def test_edges_are_mirrored_not_repeated():
    wins = [w for w, _ in iter_windows(range(6), 5, 2)]
    assert wins[0] == [2, 1, 0, 1, 2]
    assert wins[-1] == [3, 4, 5, 4, 3]


class _Item:
    def __init__(self, i):
        self.i = i


def test_memory_is_bounded_by_the_window():
    alive = weakref.WeakSet()
    pulled = 0

    def source(n):
        nonlocal pulled
        for i in range(n):
            item = _Item(i)
            alive.add(item)
            pulled += 1
            yield item
            del item

    worst = 0
    for win, t in iter_windows(source(200), 5, 2):
        assert pulled - t.i <= 3  # looks at most window - target frames ahead
        del win, t  # refcounting frees dropped items at once (no cycles here)
        worst = max(worst, len(alive))
    assert worst <= 2 * 5 + 1


def test_causal_window_has_no_lookahead_after_the_start():
    pulled = []

    def source():
        for i in range(30):
            pulled.append(i)
            yield i

    for win, t in iter_windows(source(), 4, 3):
        if t >= 3:
            assert pulled[-1] == t  # emitted as soon as the frame arrived
        assert win[-1] == t


def test_bad_window_arguments():
    with pytest.raises(ValueError):
        list(iter_windows(range(3), 3, 3))
    with pytest.raises(ValueError):
        list(iter_windows(range(3), 0, 0))


def test_batched():
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batched(range(7), 1, first=3)) == [[0, 1, 2], [3], [4], [5], [6]]  # first reaches index 2
    assert list(batched(range(7), 4, first=3)) == [[0, 1, 2, 3], [4, 5, 6]]
    assert list(batched(range(2), 1, first=3)) == [[0, 1]]
