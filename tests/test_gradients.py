"""float64 gradient checks of steps and rollouts against finite differences."""

import pytest
import torch
from torch.autograd import gradcheck

from neuradiff.physics import RandomForcing, VoidModel, VoidParameters, rollout
from physics_helpers import smooth_void_state, tensor_params

DISCS = ["conservative", "reference"]
LEARNED = VoidParameters.default_learned()


def _rollout_fn(disc, n_steps, integrator="euler", forcing=None, checkpoint_every=None):
    model = VoidModel(disc)

    def f(state, *values):
        p = VoidParameters().replace(**dict(zip(LEARNED, values)))
        return rollout(
            model,
            state,
            p,
            dt=0.02,
            n_steps=n_steps,
            integrator=integrator,
            forcing=forcing,
            checkpoint_every=checkpoint_every,
            diagnostics=False,
        ).final

    return f


def _inputs():
    state = smooth_void_state(n=8, radius=2.0).requires_grad_(True)
    _, leaves = tensor_params()
    return (state, *leaves)


@pytest.mark.parametrize("disc", DISCS)
@pytest.mark.parametrize("n_steps", [1, pytest.param(3, marks=pytest.mark.slow)])
def test_gradcheck_rollout_wrt_fields_and_every_learnable_parameter(disc, n_steps):
    assert gradcheck(_rollout_fn(disc, n_steps), _inputs(), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("integrator", ["spectral", "imex"])
def test_gradcheck_other_integrators(integrator):
    assert gradcheck(_rollout_fn("conservative", 2, integrator=integrator), _inputs(), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.slow
def test_gradcheck_stochastic_rollout():
    assert gradcheck(
        _rollout_fn("conservative", 2, forcing=RandomForcing(5)), _inputs(), eps=1e-6, atol=1e-6, rtol=1e-4
    )


def test_checkpointed_gradients_equal_plain_ones():
    inputs = _inputs()
    plain = torch.autograd.grad(_rollout_fn("conservative", 12)(*inputs).pow(2).sum(), inputs)
    ckpt = torch.autograd.grad(_rollout_fn("conservative", 12, checkpoint_every=5)(*inputs).pow(2).sum(), inputs)
    for a, b in zip(plain, ckpt):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)
    assert all(float(g.abs().sum()) > 0 for g in plain)  # gradients reach the state and every parameter
