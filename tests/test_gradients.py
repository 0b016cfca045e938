"""float64 gradient checks of steps and rollouts against finite differences."""

import pytest
import torch
from torch.autograd import gradcheck

from neuradiff.physics import RandomForcing, VoidModel, VoidParameters, rollout
from neuradiff.physics.integrators import explicit_euler
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


def _state_with_empty_cells():
    """A void state whose c_i is below zero in a few cells (as noise or an explicit step leaves it): the face
    mobilities next to them are exactly 0."""
    state = smooth_void_state(n=8, radius=2.0).clone()
    state[0, 1, 1, 1:4] = -2e-3
    state[0, 1, 6, 5] = -1e-3
    return state


def test_noisy_rollout_through_empty_cells_has_finite_gradients():
    # Zero face mobilities under the Langevin noise gave NaN gradients for every parameter (√0 has an infinite
    # derivative); the noise amplitude there does not depend on anything, so the gradient is finite.
    for dtype in (torch.float32, torch.float64):
        state = _state_with_empty_cells().to(dtype).requires_grad_(True)
        params, leaves = tensor_params()
        params = params.replace(**{k: getattr(params, k).to(dtype) for k in LEARNED})
        leaves = [getattr(params, k) for k in LEARNED]
        for integrator in ("euler", "imex"):
            final = rollout(
                VoidModel("conservative"),
                state,
                params,
                dt=0.05,
                n_steps=6,
                integrator=integrator,
                forcing=RandomForcing(3),
                diagnostics=False,
            ).final
            grads = torch.autograd.grad(final.pow(2).sum(), [state, *leaves])
            assert all(bool(torch.isfinite(g).all()) for g in grads), (dtype, integrator)
            assert all(float(g.abs().sum()) > 0 for g in grads)


@pytest.mark.slow
def test_gradcheck_noisy_rollout_through_empty_cells():
    inputs = (_state_with_empty_cells().requires_grad_(True), *tensor_params()[1])
    assert gradcheck(_rollout_fn("conservative", 1, forcing=RandomForcing(3)), inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def _saved_bytes(fn, *args):
    """Bytes of the tensors autograd saves outside checkpointed regions while ``fn(*args)`` runs."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*args)
    return out, total[0]


def test_split_steps_are_checkpointed_by_groups_of_substeps():
    state, leaves = _inputs()[0], _inputs()[1:]
    params = VoidParameters().replace(**dict(zip(LEARNED, leaves)))

    def step(group):
        return lambda s: explicit_euler(VoidModel(), s, params, 2.0, checkpoint_substeps=group)

    (plain, info), plain_bytes = _saved_bytes(step(None), state)
    (ckpt, _), ckpt_bytes = _saved_bytes(step(4), state)
    assert info.substeps >= 16  # the guard split the step
    assert ckpt_bytes < plain_bytes / 4  # only group boundaries are stored
    inputs = [state, *leaves]
    g_plain = torch.autograd.grad(plain.pow(2).sum(), inputs)
    g_ckpt = torch.autograd.grad(ckpt.pow(2).sum(), inputs)
    for a, b in zip(g_plain, g_ckpt):
        assert torch.equal(a, b)


def test_checkpointed_rollout_with_split_steps_gives_the_plain_gradients():
    inputs = _inputs()
    model = VoidModel()

    def final(checkpoint_every):
        p = VoidParameters().replace(**dict(zip(LEARNED, inputs[1:])))
        traj = rollout(model, inputs[0], p, dt=0.8, n_steps=2, checkpoint_every=checkpoint_every, diagnostics=False)
        return traj.final, traj.substeps

    (plain, n_plain), (ckpt, n_ckpt) = final(None), final(2)
    assert n_plain == n_ckpt > 6  # more sub-steps than a segment holds
    assert torch.equal(plain, ckpt)
    for a, b in zip(torch.autograd.grad(plain.sum(), inputs), torch.autograd.grad(ckpt.sum(), inputs)):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)
