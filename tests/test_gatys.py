import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch

from nst_core.adain import Stylizer
from nst_core.control import CancelToken
from nst_core.errors import ModelFileError
from nst_core.gatys import (
    EvaluationCost,
    Forecast,
    GatysConfig,
    GatysOptimizer,
    Level,
    affordable_steps,
    level_plan,
)
from nst_core.images import fit_max_side
from nst_core.losses import gram_loss, gram_matrix
from nst_core.options import RenderOptions
from nst_core.pipeline import Engine


def test_gram_is_size_normalized():
    features = torch.rand(1, 4, 6, 6)
    tiled = features.repeat(1, 1, 2, 2)  # same statistics, four times the pixels
    torch.testing.assert_close(gram_matrix(tiled), gram_matrix(features))
    assert gram_loss(gram_matrix(features), gram_matrix(features)) == 0


def test_loss_goes_down_and_progress_is_reported(encoder, content, style):
    seen = []
    config = GatysConfig(steps=12, scales=(0.5, 1.0))
    result = GatysOptimizer(encoder, config).run(content, [style], progress=seen.append)
    assert result.stopped == "done"
    assert result.steps_done == 12
    assert [p.step for p in seen] == list(range(1, 13))
    assert all(a.fraction <= b.fraction for a, b in itertools.pairwise(seen))
    assert seen[-1].fraction == pytest.approx(1.0)
    assert result.image.shape == content.shape
    full_level = result.losses[-4:]  # losses at the last (full) scale
    assert min(full_level) < full_level[0] or result.losses[-1] < result.losses[0]
    optimizer = GatysOptimizer(encoder, config)
    targets = optimizer.targets(content, [style], [1.0])
    with torch.no_grad():
        _, style_before = optimizer.losses(content, targets)
        _, style_after = optimizer.losses(result.image, targets)
    assert style_after < style_before  # the image moved towards the style


def test_cancel_stops_promptly_and_returns_best_so_far(encoder, content, style):
    token = CancelToken()

    def cancel_after_three(progress):
        if progress.step == 3:
            token.cancel()

    result = GatysOptimizer(encoder, GatysConfig(steps=50, scales=(1.0,))).run(
        content, [style], progress=cancel_after_three, cancel=token
    )
    assert result.stopped == "cancelled"
    assert result.steps_done == 3
    assert result.image.shape == content.shape


def test_cancel_during_coarse_level_still_returns_full_size(encoder, content, style):
    token = CancelToken()
    token.cancel()
    result = GatysOptimizer(encoder, GatysConfig(steps=10)).run(content, [style], cancel=token)
    assert result.stopped == "cancelled" and result.steps_done == 0
    assert result.image.shape == content.shape


def test_time_budget(encoder, content, style, monkeypatch):
    """The run stops once its budget is spent, on any machine: its clock here advances a tenth of a
    second each time it is read (a real one made the test fail on a loaded CPU, where the targets
    alone outlasted the budget and no step was taken)."""
    readings = itertools.count()
    monkeypatch.setattr("nst_core.gatys.time.monotonic", lambda: 0.1 * next(readings))
    result = GatysOptimizer(encoder, GatysConfig(steps=10_000, time_budget_s=1.0)).run(content, [style])
    assert result.stopped == "time_budget"
    assert 5 <= result.steps_done <= 10  # one reading sets the deadline, each evaluation reads once


def test_several_styles_with_weights_and_init_image(encoder, content, style, style2):
    init = torch.full_like(content, 0.5)
    result = GatysOptimizer(encoder, GatysConfig(steps=4, scales=(1.0,))).run(
        content, [style, style2], weights=[0.7, 0.3], init_image=init
    )
    assert result.image.shape == content.shape
    assert not torch.equal(result.image, init)


def test_bad_arguments(encoder, content, style):
    with pytest.raises(ValueError, match="style"):
        GatysOptimizer(encoder).run(content, [])
    with pytest.raises(ValueError, match="steps"):
        GatysOptimizer(encoder, GatysConfig(steps=0)).run(content, [style])


def test_hq_from_adain_init_needs_a_trained_decoder(stylizer, content_image, style_image):
    options = RenderOptions(hq=True, steps=2, max_side=48, hq_init="adain")
    with pytest.raises(ModelFileError, match="needs a trained decoder"):
        Engine.of(stylizer).render(content_image, [style_image], options)
    trained = Stylizer(stylizer.encoder, stylizer.decoder, stylizer.device, decoder_trained=True)
    rendered = Engine.of(trained).render(content_image, [style_image], options)
    assert max(rendered.image.size) == 48 and rendered.stopped == "done"


def test_hq_alpha_zero_keeps_the_photo(stylizer, content_image, style_image):
    """Alpha scales the style term: at 0 the content is already optimal, so the photo comes back
    (at one scale: coarse-to-fine would blur it on the way)."""
    engine = Engine.of(stylizer, GatysConfig(scales=(1.0,)))
    options = RenderOptions(hq=True, steps=30, max_side=48, alpha=0.0)
    rendered = engine.render(content_image, [style_image], options)
    photo = np.asarray(fit_max_side(content_image, 48), dtype=np.float32)
    assert np.abs(np.asarray(rendered.image, dtype=np.float32) - photo).mean() < 1.0
    styled = engine.render(content_image, [style_image], replace(options, alpha=1.0))
    assert np.abs(np.asarray(styled.image, dtype=np.float32) - photo).mean() > 2.0


def test_hq_applies_alpha_once_when_it_starts_from_adain(stylizer, content_image, style_image, monkeypatch):
    trained = Stylizer(stylizer.encoder, stylizer.decoder, stylizer.device, decoder_trained=True)
    seen = []
    stylize = trained.stylize
    monkeypatch.setattr(
        trained, "stylize", lambda c, s, options: seen.append(options) or stylize(c, s, options)
    )
    options = RenderOptions(hq=True, steps=2, max_side=48, alpha=0.5, hq_init="adain")
    Engine.of(trained).render(content_image, [style_image], options)
    assert [o.alpha for o in seen] == [1.0]  # the init is full style; alpha acts in the objective only


def test_time_budget_stop_is_reported_by_the_engine(stylizer, content_image, style_image):
    options = RenderOptions(hq=True, steps=10_000, max_side=48, time_budget_s=1e-3)  # less than any plan
    rendered = Engine.of(stylizer).render(content_image, [style_image], options)
    assert rendered.stopped == "time_budget" and max(rendered.image.size) == 48


def test_the_first_forecast_is_the_calibrated_cost_of_the_plan(encoder, content, style):
    config = GatysConfig(steps=12, scales=(0.5, 1.0))
    plan = level_plan(tuple(content.shape[-2:]), config)
    assert [level.steps for level in plan] == [8, 4] and plan[-1].size == tuple(content.shape[-2:])
    cost = GatysOptimizer(encoder, config).measure_cost()
    # timed: on a loaded machine the smaller picture can take as long as the larger one, so only
    # what calibration guarantees is asserted (a positive cost that never falls with size)
    assert cost.fixed_s >= 0 and cost.per_megapixel_s >= 0 and cost.seconds((64, 64)) > 0
    assert cost.seconds((64, 64)) <= cost.seconds((160, 160))
    seen = []
    GatysOptimizer(encoder, config, cost).run(content, [style], progress=seen.append)
    first, *reports = seen
    assert (first.step, first.fraction) == (0, 0.0)  # a forecast before any evaluation
    assert first.seconds_left == pytest.approx(sum(level.steps * cost.seconds(level.size) for level in plan))
    assert [report.step for report in reports] == list(range(1, 13))
    assert reports[-1].seconds_left == pytest.approx(0.0, abs=1e-9)


def test_the_forecast_never_runs_past_the_time_budget(encoder, content, style):
    slow = EvaluationCost(fixed_s=60.0, per_megapixel_s=0.0)
    seen = []
    config = GatysConfig(steps=3, scales=(1.0,), time_budget_s=30.0)
    GatysOptimizer(encoder, config, slow).run(content, [style], progress=seen.append)
    assert 29.0 < seen[0].seconds_left <= 30.0  # 180 s of work, but the budget stops it at 30 s
    seen.clear()
    GatysOptimizer(encoder, config).run(content, [style], progress=seen.append)
    assert [report.seconds_left for report in seen] == [None] * 3  # no calibration, no forecast


def test_the_forecast_follows_the_pace_after_the_warm_up(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("nst_core.gatys.time.monotonic", lambda: clock[0])
    level = Level(1.0, (1000, 1000), 10)
    forecast = Forecast(EvaluationCost(fixed_s=0.0, per_megapixel_s=1.0), [level], deadline=None)
    assert forecast.seconds_left() == 10.0
    for _ in range(Forecast.WARM_UP):  # slow first evaluations do not count
        clock[0] += 30.0
        forecast.evaluated(level)
    assert forecast.seconds_left() == 7.0
    for _ in range(2):  # then twice as slow as calibrated
        clock[0] += 2.0
        forecast.evaluated(level)
    assert forecast.seconds_left() == pytest.approx(10.0)  # 5 evaluations left, 2 s each


def test_a_plan_that_would_outlast_the_budget_gets_fewer_evaluations_and_runs_every_level(
    encoder, content, style, monkeypatch
):
    """The plan alone keeps within the budget: the wall clock is frozen here (``test_time_budget``
    covers the deadline), so a busy machine cannot stop the run early."""
    monkeypatch.setattr("nst_core.gatys.time.monotonic", lambda: 0.0)
    slow = EvaluationCost(fixed_s=1.0, per_megapixel_s=0.0)  # 100 evaluations: 100 s
    config = GatysConfig(steps=100, time_budget_s=10.0)
    assert affordable_steps(tuple(content.shape[-2:]), config, slow) == 8  # 80 % of the budget
    assert affordable_steps(tuple(content.shape[-2:]), replace(config, time_budget_s=None), slow) == 100
    seen = []
    result = GatysOptimizer(encoder, config, slow).run(content, [style], progress=seen.append)
    assert (result.stopped, result.steps_done) == ("done", 8)
    assert [report.total for report in seen] == [8] * 9
