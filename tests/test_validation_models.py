import pytest
import torch

from neuradiff.physics import SpinodalModel, SpinodalParameters, pfhub1_initial_condition, rollout


def test_pfhub1_initial_condition_mean_composition():
    c = pfhub1_initial_condition((200, 200))
    assert float(c.mean()) == pytest.approx(0.5025227, abs=1e-6)


@pytest.mark.parametrize(
    "boundary,integrator,dt",
    [("periodic", "spectral", 0.5), pytest.param("no-flux", "euler", 2e-3, marks=pytest.mark.slow)],
)
def test_pfhub1_conserves_mass_and_lowers_the_free_energy(boundary, integrator, dt):
    # Benchmark 1a (periodic) and 1b (no-flux walls) on a 50×50 corner of the benchmark's initial condition.
    c = pfhub1_initial_condition((200, 200))[..., :50, :50].contiguous()
    model, p = SpinodalModel(boundary=boundary), SpinodalParameters()
    tr = rollout(model, c, p, dt=dt, n_steps=round(5.0 / dt), save_every=round(1.0 / dt), integrator=integrator)
    total = tr.diagnostics["total_c"][:, 0]
    assert float((total - total[0]).abs().max() / total[0]) < 1e-12
    f = tr.diagnostics["free_energy"][:, 0]
    assert bool((torch.diff(f) <= 1e-9).all()) and float(f[-1]) < float(f[0])
