"""The render worker's micro-batching, in process: jobs that arrive together share one batch, each
gets its own result, and one bad job in a batch fails only itself."""

from __future__ import annotations

import asyncio

import pytest
from PIL import Image

from bot.config import Settings
from bot.render_worker import FastBatcher, batch_size_for
from nst_core.control import Rendered
from nst_core.options import RenderOptions
from testkit.stubs import StubEngine

BROKEN_SIZE = (13, 13)


class RecordingEngine(StubEngine):
    """Records each batch's size; a content of ``BROKEN_SIZE`` makes the whole batch fail."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def render_batch(self, requests: list) -> list[Rendered]:
        self.batches.append(len(requests))
        if any(content.size == BROKEN_SIZE for content, _, _ in requests):
            raise ValueError("a broken picture")
        return super().render_batch(requests)


async def render_together(batcher: FastBatcher, sizes: list[tuple[int, int]]) -> list:
    runner = asyncio.create_task(batcher.run_forever())
    style, options = Image.new("RGB", (8, 8)), RenderOptions()
    try:
        return await asyncio.gather(
            *(batcher.render(Image.new("RGB", size), [style], options) for size in sizes),
            return_exceptions=True,
        )
    finally:
        runner.cancel()


@pytest.mark.parametrize(("batch_size", "batches"), [(4, [4, 1]), (1, [1, 1, 1, 1, 1])])
def test_jobs_that_arrive_together_share_a_batch_and_keep_their_own_results(batch_size, batches):
    engine = RecordingEngine()
    sizes = [(40 + i, 30) for i in range(5)]
    results = asyncio.run(render_together(FastBatcher(engine, batch_size), sizes))
    assert engine.batches == batches
    assert [result.image.size for result in results] == sizes


def test_a_bad_job_fails_only_itself():
    engine = RecordingEngine()
    results = asyncio.run(render_together(FastBatcher(engine, size=4), [(40, 30), BROKEN_SIZE, (50, 20)]))
    assert engine.batches == [3, 1, 1, 1]  # the batch, then each job alone
    assert results[0].image.size == (40, 30) and results[2].image.size == (50, 20)
    assert isinstance(results[1], ValueError)


@pytest.mark.parametrize(("configured", "expected"), [(None, 1), (3, 3)])
def test_batches_on_a_cpu_are_single_unless_configured(configured, expected):
    settings = Settings(_env_file=None, device="cpu", fast_batch_size=configured)
    assert batch_size_for(settings) == expected
