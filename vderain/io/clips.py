"""Temporal windows around each frame of a stream, with reflection at both ends.

Every input frame comes out exactly once as a target, in order; frames beyond the
ends are mirrored (..., 2, 1, [0, 1, 2, ...]) so the first and last frames get
full windows without dropping or duplicating any output frame.
Memory is O(window): only the frames a pending window can still need are kept.
"""
from __future__ import annotations

from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def reflect_index(j: int, n: int) -> int:
    """Mirror index j into [0, n) without repeating the edge frame: -1 -> 1, n -> n - 2."""
    if n <= 1:
        return 0
    period = 2 * (n - 1)
    j %= period
    return j if j < n else period - j


def iter_windows(frames: Iterable[T], window: int, target: int) -> Iterator[tuple[list[T], T]]:
    """Yield (window_items, target_item) for every item of `frames`, in order.

    window_items[target] is target_item. A causal window (target = window - 1) never waits
    for later frames except at the very start, where reflection needs the first `window - 1`.
    """
    if window < 1 or not 0 <= target < window:
        raise ValueError(f"need window >= 1 and 0 <= target < window (got {window}, {target})")
    before = target
    buf: dict[int, T] = {}
    read = 0      # frames received so far
    next_out = 0  # index of the next frame to emit

    def offsets(i: int, n: int | None) -> list[int]:
        idx = range(i - before, i - before + window)
        if n is None:  # stream still open: only the left edge can be mirrored yet
            return [-j if j < 0 else j for j in idx]
        return [reflect_index(j, n) for j in idx]

    def emit(i: int, n: int | None):
        nonlocal next_out
        items = [buf[j] for j in offsets(i, n)]
        next_out += 1
        old = next_out - window - 1  # nothing at or below this index can be needed again
        buf.pop(old, None)
        return items, buf[i]

    for item in frames:
        buf[read] = item
        read += 1
        while next_out < read and max(offsets(next_out, None)) < read:
            yield emit(next_out, None)
    n = read
    while next_out < n:
        yield emit(next_out, n)


def batched(items: Iterable[T], size: int, first: int = 1) -> Iterator[list[T]]:
    """Group an iterable into lists of at most `size` items; the first list holds at least
    `first` (when there are that many)."""
    group: list[T] = []
    want = max(size, first)
    for item in items:
        group.append(item)
        if len(group) == want:
            yield group
            group = []
            want = size
    if group:
        yield group
