"""The fused kernel of the reference discretisation against its plain PyTorch path (the readable reference): states,
counts and every gradient (state, forcing increment, the nine learned parameters), float64 gradchecks, rollouts."""

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from neuradiff.physics import RandomForcing, Simulator, VoidModel, VoidParameters, explicit_euler, rollout, single_void
from neuradiff.physics.fused import KERNEL_LEARNED
from neuradiff.physics.fused_reference import (
    fused_reference_forcing,
    fused_reference_forcing_unavailable,
    fused_reference_philox_forcing,
    fused_reference_stability,
    fused_reference_step,
    fused_reference_substeps,
    fused_reference_unavailable,
)
from neuradiff.physics.random_numbers import PhiloxNumbers, keyed_draws
from physics_helpers import smooth_void_state

LEARNED = VoidParameters.default_learned()
EPS = 1e-6  # the reference discretisation's log floor


@pytest.fixture(scope="module", autouse=True)
def _kernel_built():
    for dtype in (torch.float32, torch.float64):  # builds both libraries (once per cache folder)
        reason = fused_reference_unavailable(
            torch.zeros(1, 3, 4, 4, dtype=dtype), VoidParameters(), boundary="periodic"
        )
        if reason is not None:
            # no compiler: the plain path stands in (tested elsewhere); a compiler that fails on the source is a bug
            assert "compiling the fused kernel failed" not in reason, reason
            pytest.skip(reason)


def _edge_state(dtype, batch=2, shape=(24, 20)):
    """A noisy void whose values reach every branch of the reference step: c at, below and just under the log floor,
    s = 1 − c_v − c_i at, below and just under the floor (f_s masked), η at both bounds, and outputs clamped at 0
    and at 1."""
    g = torch.Generator().manual_seed(0)
    s = single_void(shape, 5.0, dtype=dtype).repeat(batch, 1, 1, 1)
    s = (s + 0.02 * torch.randn(s.shape, generator=g, dtype=dtype)).contiguous()
    last = batch - 1
    s[0, 0, 2, 2:5] = 0.0
    s[0, 0, 3, 2:5] = -0.01
    s[0, 1, 4, :] = 0.0
    s[last, 1, 5, 3:9] = 5e-7  # below the floor, above zero
    s[last, 0, 5, 10:12] = EPS  # exactly at the floor: the gradient passes (torch.clamp's rule)
    s[0, 1, 9, 4:8] = 0.01
    s[0, 0, 9, 4:8] = 1.0 - 0.01 - 5e-7  # c_v + c_i > 1 − 1e-6: f_s and its derivatives masked
    s[0, 0, 11, 10:14] = 0.99
    s[0, 1, 11, 10:14] = 0.02  # s < 0
    s[last, 2, 6, :5] = 1.0
    s[last, 2, 7, :5] = 0.0
    return s


def _leaves(dtype):
    leaves = [torch.tensor(getattr(VoidParameters(), n), dtype=dtype, requires_grad=True) for n in LEARNED]
    return leaves, VoidParameters().replace(**dict(zip(LEARNED, leaves)))


def _weight(x):
    return torch.sin(torch.arange(x.numel(), dtype=x.dtype)).reshape(x.shape)


def _assert_gradients_match(names, plain, fused, truth=None):
    """float64 (``truth`` None): equal to round-off. float32: the kernel's error against the float64 plain path
    ``truth`` (the same inputs) is of the size of the plain float32 path's own round-off error: at most four times
    it, plus 1e-5 of the gradient (a parameter's gradient is a sum over the grid that cancels, so its round-off is
    that of the sum of the magnitudes; the plain path's pairwise sums are sometimes luckier)."""
    for name, a, b, *t in zip(names, plain, fused, *([truth] if truth is not None else [])):
        assert bool(torch.isfinite(b).all()), name
        if truth is None:
            assert float((a - b).abs().max()) <= 1e-12 * max(float(a.abs().max()), 1e-3), name
            continue
        exact = t[0]
        err_plain = float((a.double() - exact).abs().max())
        err_fused = float((b.double() - exact).abs().max())
        assert err_fused <= 4.0 * err_plain + 1e-5 * max(float(exact.abs().max()), 1e-3), name


def test_the_kernel_covers_the_learned_parameters():
    assert tuple(LEARNED) == KERNEL_LEARNED


def _one_step(mode, kernel, boundary, s0, f0, weight):
    """(output, counts, gradients) of one step on copies of ``s0``, ``f0`` in their dtype (see the test below)."""
    leaves, p = _leaves(s0.dtype)
    s = s0.clone().requires_grad_(True)
    f = f0.clone().requires_grad_(True)
    model = VoidModel("reference", kernel=kernel, boundary=boundary)
    inputs = [s, *leaves]
    if mode == "update":
        u, counts = model.euler_update(s, p, 0.05, 0.9), torch.zeros(())
    elif mode == "substep":
        u, counts = model.euler_substep(s, p, 0.05, 0.9)
    else:
        u, counts = model.euler_substep(s, p, 0.05, 0.9, forcing=f, forcing_divisor=3)
        inputs = [s, f, *leaves]
    return u.detach(), counts, torch.autograd.grad((u * weight.to(u.dtype)).sum(), inputs)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("boundary", ["periodic", "no-flux"])
@pytest.mark.parametrize("mode", ["update", "substep", "forced"])
def test_fused_step_and_gradients_equal_the_plain_path(dtype, boundary, mode):
    """``update``: euler_update (no projection); ``substep``: the projected sub-step; ``forced``: with a forcing
    increment shared by three sub-steps, whose gradient is compared too."""
    s0 = _edge_state(dtype)
    f0 = 0.05 * torch.randn(s0.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    weight = _weight(s0)
    u_ref, c_ref, g_ref = _one_step(mode, "torch", boundary, s0, f0, weight)
    u_fused, c_fused, g_fused = _one_step(mode, "fused", boundary, s0, f0, weight)
    assert torch.equal(c_ref, c_fused)
    if mode != "update":
        assert int(c_ref.sum()) > 0 and float(u_fused.min()) == 0.0 and float(u_fused.max()) == 1.0
    assert float((u_ref - u_fused).abs().max()) <= (1e-13 if dtype == torch.float64 else 3e-7)
    truth = None if dtype == torch.float64 else _one_step(mode, "torch", boundary, s0.double(), f0.double(), weight)[2]
    _assert_gradients_match(["state", *(["forcing"] if mode == "forced" else []), *LEARNED], g_ref, g_fused, truth)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_values_exactly_at_the_floors(dtype):
    """c_v, c_i and s = 1 − c_v − c_i exactly at the floor (a power of two, so that s is exact): the floored
    logarithm passes its gradient there and f_s is kept, as torch.clamp and ``s >= floor`` have it."""
    floor = 2.0**-20
    s0 = _edge_state(dtype, batch=1, shape=(16, 16))
    s0[0, 1, 3, 2:6] = 0.25
    s0[0, 0, 3, 2:6] = 0.75 - floor  # s = floor exactly
    s0[0, 0, 4, 2:6] = floor
    s0[0, 1, 5, 2:6] = floor
    assert bool((1.0 - s0[0, 0, 3, 2:6] - s0[0, 1, 3, 2:6] == floor).all())
    weight = _weight(s0)

    def run(kernel, s0):
        leaves, p = _leaves(s0.dtype)
        s = s0.clone().requires_grad_(True)
        u, _ = VoidModel("reference", kernel=kernel, log_floor=floor).euler_substep(s, p, 0.05, 1.0)
        return u.detach(), torch.autograd.grad((u * weight.to(u.dtype)).sum(), [s, *leaves])

    (a, ga), (b, gb) = run("torch", s0), run("fused", s0)
    assert float((a - b).abs().max()) <= (1e-13 if dtype == torch.float64 else 3e-7)
    _assert_gradients_match(
        ["state", *LEARNED], ga, gb, None if dtype == torch.float64 else run("torch", s0.double())[1]
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_several_substeps_equal_the_plain_path_and_single_calls(dtype):
    s0 = _edge_state(dtype, shape=(16, 14))
    f0 = 0.01 * torch.randn(s0.shape, generator=torch.Generator().manual_seed(2), dtype=dtype)
    f0[:, 2] += 0.05  # pushes eta over 1 in places
    weight = _weight(s0)

    def run(how, s0, f0):
        leaves, p = _leaves(s0.dtype)
        s = s0.clone().requires_grad_(True)
        f = f0.clone().requires_grad_(True)
        kw = {"forcing": f, "forcing_divisor": 3}
        fused_kw = {"log_floor": EPS, "boundary": "no-flux", **kw}
        if how == "plain":
            out, counts = VoidModel("reference", boundary="no-flux").euler_substeps(s, p, 0.02, 1.1, 3, **kw)
        elif how == "substeps":
            out, counts = fused_reference_substeps(s, p, 0.02, 1.1, 3, **fused_kw)
        else:
            out, counts = s, 0
            for _ in range(3):
                out, c = fused_reference_step(out, p, 0.02, 1.1, project=True, **fused_kw)
                counts = counts + c
        return out.detach(), counts, torch.autograd.grad((out * weight.to(out.dtype)).sum(), [s, f, *leaves])

    (a_out, a_counts, a_grads), (b_out, b_counts, b_grads), (c_out, c_counts, c_grads) = (
        run(how, s0, f0) for how in ("plain", "substeps", "steps")
    )
    assert torch.equal(b_out, c_out) and torch.equal(b_counts, c_counts)
    assert torch.equal(a_counts, b_counts) and int(a_counts[:, 2].sum()) > 0
    assert float((a_out - b_out).abs().max()) <= (1e-13 if dtype == torch.float64 else 5e-7)
    names = ["state", "forcing", *LEARNED]
    # the same kernel calls; in float32 the single calls' parameter gradients are rounded to float32 per call before
    # autograd adds them (a cancelling sum), so they are compared with the plain path's only
    for name, b, c in zip(names if dtype == torch.float64 else names[:2], b_grads, c_grads):
        assert float((b - c).abs().max()) <= 1e-12 * max(float(b.abs().max()), 1e-3), name
    truth = None if dtype == torch.float64 else run("plain", s0.double(), f0.double())[2]
    _assert_gradients_match(names, a_grads, b_grads, truth)


def test_gradcheck_a_fused_step_with_seeded_cascades_and_noise():
    """A whole explicit step of the rollout (stability guard, the model's forcing increment from RandomForcing,
    the fused sub-steps and their projection) in float64, near the floors and the clamps but not on a kink."""
    model = VoidModel("reference", kernel="fused", boundary="no-flux")
    state = smooth_void_state(n=8, radius=2.0).clone()
    state[0, 0, 1, 1:3] = -0.01  # below the log floor (and clamped at 0 after the step)
    state[0, 0, 6, 5:7] = 0.995
    state[0, 1, 6, 5:7] = 0.01  # s < 0: f_s masked
    state[0, 2, 3, 1] = 1.02  # clamped at 1
    leaves, _ = _leaves(torch.float64)
    draws = RandomForcing(3).draws(model, 0, state)
    assert draws is not None
    draws["gate"][0, :3] = 0.0  # cascades in the first rows

    def step(s, *values):
        p = VoidParameters(noise=0.2).replace(**dict(zip(LEARNED, values)))
        return explicit_euler(model, s, p, 0.3, draws=draws)[0]

    with torch.no_grad():
        new = step(state, *leaves)
    assert bool(((new == 0.0) | (new == 1.0)).any())  # the projection is at work
    inputs = (state.requires_grad_(True), *leaves)
    grads = torch.autograd.grad(step(*inputs).sum(), inputs)
    assert all(bool(torch.isfinite(g).all()) for g in grads)
    assert gradcheck(step, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_fused_stochastic_increment_equals_the_plain_one(dtype, monkeypatch):
    """Cascades and noise from the same draws: equal to round-off, cascades where the gate opens and η < 0.8 only,
    in one kernel call; the plain path where the kernel does not apply."""
    s = _edge_state(dtype, batch=3)
    s[1, 2, :12] = 0.9  # η above the cascade bound in half of one frame
    fused, plain = VoidModel("reference", kernel="fused"), VoidModel("reference")
    draws = fused.draw(torch.Generator().manual_seed(4), tuple(s.shape), dtype)
    draws["gate"][:] = 1.0
    draws["gate"][:, ::3] = 0.0  # every third row open to cascades, the others closed
    p = VoidParameters(noise=0.3, bias=0.7)
    calls = []
    monkeypatch.setattr(
        "neuradiff.physics.void_model.fused_reference_forcing",
        lambda *a, **k: calls.append(1) or fused_reference_forcing(*a, **k),
    )
    a = fused.forcing_increment(s, p, draws, 0.1, 1.0)
    b = plain.forcing_increment(s, p, draws, 0.1, 1.0)
    assert a is not None and b is not None and calls == [1]
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    assert torch.allclose(a, b, rtol=tol, atol=tol * float(b.abs().max()))
    quiet = VoidModel("reference", kernel="fused").forcing_increment(s, p.replace(noise=0.0), draws, 0.1, 1.0)
    hit = (quiet[:, 0] != 0).to(dtype)
    assert float(hit[:, ::3].mean()) > 0.3 and float(hit[:, 1::3].sum()) == 0  # the gate
    assert float(hit[1, :12].sum()) == 0  # η ≥ 0.8: no cascade
    assert torch.allclose(quiet[:, 1] * 0.7, quiet[:, 0] * 0.3, atol=1e-6)  # shared by the bias
    assert fused_reference_forcing_unavailable(s, p, draws) is None
    wanting = p.replace(p_casc=torch.tensor(0.1, requires_grad=True))
    assert "does not differentiate p_casc" in fused_reference_forcing_unavailable(s, wanting, draws)
    five = {**draws, "xi": torch.zeros(3, 5, *s.shape[2:], dtype=dtype)}
    assert "not those of the reference model" in fused_reference_forcing_unavailable(s, p, five)
    before = len(calls)
    fused.forcing_increment(s, wanting, draws, 0.1, 1.0)  # the plain path, not the kernel
    assert len(calls) == before


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("batch", "shape", "threads"), [(3, (9, 11), 1), (1, (16, 16), 2), (2, (192, 192), 2)]
)  # an odd pixel count; a batch; chunks shared by two threads
def test_the_increment_made_from_a_philox_key_equals_the_one_from_its_fields(dtype, batch, shape, threads):
    """The kernel that makes a step's numbers from their key gives, to the bit, the increment of the fields
    PhiloxNumbers draws for the same key (gate, amplitude, ξ in the model's order), on any thread count."""
    s = smooth_void_state(n=shape[0], radius=shape[0] / 4).to(dtype)[:, :, :, : shape[1]].repeat(batch, 1, 1, 1)
    s = s.contiguous()
    s[0, 2, : shape[0] // 2] = 0.9  # η above the cascade bound in half of one frame
    model = VoidModel("reference")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        for p_casc, key in ((0.01, 7), (0.6, 2**64 - 11)):
            p = VoidParameters(noise=0.3, bias=0.7, p_casc=p_casc)
            fields = model.draw(PhiloxNumbers(key), tuple(s.shape), dtype)
            made = fused_reference_philox_forcing(s, p, key, 0.1, eta_max=0.8)
            assert torch.equal(made, fused_reference_forcing(s, p, fields, 0.1, eta_max=0.8))
            cascades = (made[:, 0] - 0.1 * 0.3 * fields["xi"][:, 0]).abs() > 1e-5
            assert p_casc < 0.5 or int(cascades.sum()) > 0.3 * cascades.numel() / 2  # cascades where η < 0.8
    finally:
        torch.set_num_threads(before)


def test_a_fused_model_makes_keyed_draws_in_the_kernel_and_the_plain_path_from_their_fields(monkeypatch):
    s = _edge_state(torch.float32, batch=2)
    fused, plain = VoidModel("reference", kernel="fused"), VoidModel("reference")
    keyed = RandomForcing(9, generator="philox").draws(fused, 4, s)
    calls = []
    monkeypatch.setattr(
        "neuradiff.physics.void_model.fused_reference_philox_forcing",
        lambda *a, **k: calls.append(1) or fused_reference_philox_forcing(*a, **k),
    )
    p = VoidParameters(noise=0.3)
    a = fused.forcing_increment(s, p, keyed, 0.1, 1.0)
    b = plain.forcing_increment(s, p, keyed, 0.1, 1.0)
    assert a is not None and b is not None and calls == [1]
    assert torch.allclose(a, b, rtol=1e-6, atol=1e-6 * float(b.abs().max()))
    assert torch.equal(keyed_draws(int(keyed["philox_key"]))["philox_key"], keyed["philox_key"])
    wanting = p.replace(p_casc=torch.tensor(0.01, requires_grad=True))
    c = fused.forcing_increment(s, wanting, keyed, 0.1, 1.0)  # the plain path from the fields, not the kernel
    assert calls == [1] and c is not None and torch.allclose(c, b, rtol=1e-6, atol=1e-6 * float(b.abs().max()))


def test_gradcheck_several_substeps_with_a_forcing():
    s0 = _edge_state(torch.float64, batch=1)[:, :, 12:22, :9].contiguous()
    f0 = 1e-3 * torch.randn(s0.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    leaves, p = _leaves(torch.float64)

    def run(s, f, *vals):
        q = p.replace(**dict(zip(LEARNED, vals)))
        return fused_reference_substeps(s, q, 0.02, 1.0, 3, forcing=f, log_floor=EPS)[0]

    inputs = (s0.clone().requires_grad_(True), f0.clone().requires_grad_(True), *leaves)
    assert gradcheck(run, inputs, eps=1e-7, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize(
    ("boundary", "generator"), [("periodic", "torch"), ("no-flux", "torch"), ("periodic", "philox")]
)
def test_fused_rollout_with_noise_and_split_steps_matches_the_plain_one(boundary, generator):
    state = smooth_void_state(n=10, radius=2.5).clone()
    state[0, 1, 1, 1:4] = 0.0
    state.requires_grad_(True)
    finals = []
    for kernel in ("torch", "fused"):
        leaves, p = _leaves(torch.float64)
        tr = rollout(
            VoidModel("reference", kernel=kernel, boundary=boundary),
            state,
            p,
            dt=0.25,
            n_steps=3,
            forcing=RandomForcing(5, generator=generator),
            checkpoint_every=2,
            diagnostics=False,
        )
        assert tr.substeps > 3  # the guard split the steps
        finals.append((tr.final, tr.clamped, torch.autograd.grad(tr.final.pow(2).sum(), [state, *leaves])))
    (a, ca, ga), (b, cb, gb) = finals
    assert torch.equal(ca, cb) and int(ca.sum()) > 0
    assert torch.allclose(a, b, rtol=0, atol=1e-12)
    for x, y in zip(ga, gb):
        assert bool(torch.isfinite(y).all())
        assert torch.allclose(x, y, rtol=1e-9, atol=1e-12)


def test_checkpointed_substeps_recompute_the_same_gradients():
    """The integrator's checkpoint groups (the memory bound of a stiff step) give the gradients of the whole step."""
    model = VoidModel("reference", kernel="fused")
    s0 = _edge_state(torch.float64, batch=1, shape=(16, 16))
    grads = []
    for group in (None, 2):
        leaves, p = _leaves(torch.float64)
        s = s0.clone().requires_grad_(True)
        out, info = explicit_euler(model, s, p, 0.3, checkpoint_substeps=group)
        assert info.substeps > 2
        grads.append(torch.autograd.grad((out * _weight(out)).sum(), [s, *leaves]))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("boundary", ["periodic", "no-flux"])
def test_the_stability_estimate_from_the_kernel_equals_the_plain_one(dtype, boundary):
    s = _edge_state(dtype)
    p = VoidParameters(L=3.0, kappa_eta=2.0, D_i=4.0)
    plain, fused = VoidModel("reference", boundary=boundary), VoidModel("reference", boundary=boundary, kernel="fused")
    for dx in (1.0, 0.7):
        a, b = float(plain.stability_rate(s, p, dx)), float(fused.stability_rate(s, p, dx))
        assert b == pytest.approx(a, rel=1e-6 if dtype == torch.float32 else 1e-12)
        tv, ti, te = fused_reference_stability(s, p, dx, log_floor=EPS)
        assert max(tv, ti, te) > 0
    bad = s.clone()
    bad[1, 2, 5, 5] = float("nan")
    assert not torch.isfinite(fused.stability_rate(bad, p, 1.0))


@pytest.mark.parametrize("project", [False, True])
def test_a_step_with_nothing_to_differentiate_gives_the_same_bits_without_autograd(project):
    s = _edge_state(torch.float32)
    f = 1e-3 * torch.randn(s.shape, generator=torch.Generator().manual_seed(2)) if project else None
    _, p = _leaves(torch.float32)
    kw = {"log_floor": EPS, "forcing": f, "project": project}
    recorded, counts = fused_reference_step(s, p, 0.05, 1.0, **kw)
    with torch.no_grad():
        bare, bare_counts = fused_reference_step(s, p, 0.05, 1.0, **kw)
    plain, plain_counts = fused_reference_step(s, VoidParameters(), 0.05, 1.0, **kw)
    assert recorded.grad_fn is not None and bare.grad_fn is None and plain.grad_fn is None
    assert torch.equal(recorded.detach(), bare) and torch.equal(bare, plain)
    assert torch.equal(counts, bare_counts) and torch.equal(counts, plain_counts)
    if project:
        kw.pop("project")
        many, many_counts = fused_reference_substeps(s, p, 0.05, 1.0, 3, **kw)
        with torch.no_grad():
            bare, bare_counts = fused_reference_substeps(s, p, 0.05, 1.0, 3, **kw)
        assert many.grad_fn is not None and bare.grad_fn is None
        assert torch.equal(many.detach(), bare) and torch.equal(many_counts, bare_counts)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("batch", "shape"), [(1, (64, 40)), (3, (32, 24))])  # rows split / batch elements shared
def test_results_do_not_depend_on_the_thread_count(dtype, batch, shape):
    s0 = _edge_state(dtype, batch=batch, shape=shape)
    f0 = 1e-3 * torch.randn(s0.shape, generator=torch.Generator().manual_seed(3), dtype=dtype)
    results = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            leaves, p = _leaves(dtype)
            s = s0.clone().requires_grad_(True)
            f = f0.clone().requires_grad_(True)
            out, counts = fused_reference_step(s, p, 0.02, 1.0, log_floor=EPS)
            out, more = fused_reference_substeps(out, p, 0.02, 1.0, 2, log_floor=EPS, forcing=f, forcing_divisor=2)
            results.append(
                (out.detach(), counts + more, torch.autograd.grad((out * _weight(out)).sum(), [s, f, *leaves]))
            )
    finally:
        torch.set_num_threads(before)
    (a_out, a_counts, a_grads), (b_out, b_counts, b_grads) = results
    assert torch.equal(a_out, b_out) and torch.equal(a_counts, b_counts)
    assert int(a_counts.sum()) > 0
    for name, a, b in zip(["state", "forcing", *LEARNED], a_grads, b_grads):
        assert torch.equal(a, b), name


def test_where_the_kernel_does_not_apply_the_plain_path_is_used():
    s = _edge_state(torch.float64, batch=1)
    p = VoidParameters()
    assert fused_reference_unavailable(s, p, boundary="mirror") is not None
    assert fused_reference_unavailable(s.to(torch.float16), p, boundary="periodic") is not None
    fixed = p.replace(R_bulk=torch.tensor(5.0, dtype=torch.float64, requires_grad=True))
    assert "R_bulk" in str(fused_reference_unavailable(s, fixed, boundary="periodic"))
    plain, fused = VoidModel("reference"), VoidModel("reference", kernel="fused")
    assert repr(fused).endswith("kernel='fused')")
    # the IMEX step, which the reference discretisation does not define, and an undifferentiated parameter
    a = plain.euler_update(s, p, 0.05, 1.0, implicit_local=True)
    assert torch.equal(fused.euler_update(s, p, 0.05, 1.0, implicit_local=True), a)
    assert torch.equal(fused.euler_substep(s, fixed, 0.05, 1.0)[0], plain.euler_substep(s, fixed, 0.05, 1.0)[0])
    assert torch.equal(fused.stability_rate(s, fixed, 1.0), plain.stability_rate(s, fixed, 1.0))


def test_a_simulator_and_a_simulation_can_step_the_reference_model_with_the_fused_kernel():
    from neuradiff.synth.simulation import SimulationConfig, run_simulation

    sim = Simulator(discretisation="reference", integrator="euler", dt=0.05, kernel="fused")
    assert sim.model.kernel == "fused" and sim.model.discretisation == "reference"
    assert Simulator.from_dict(sim.to_dict()) == sim
    s = single_void((16, 16), 4.0, dtype=torch.float64)
    plain = Simulator(discretisation="reference", integrator="euler", dt=0.05)
    a = plain.run(s, VoidParameters(), 2.0, forcing=1).final
    b = sim.run(s, VoidParameters(), 2.0, forcing=1).final
    assert torch.allclose(a, b, rtol=0, atol=1e-12)

    kw = {"initial": "single-disk", "size": 32, "steps": 60, "save_every": 20, "seed": 3}
    run_plain = run_simulation(SimulationConfig(**kw, discretisation="reference"))
    run_fused = run_simulation(SimulationConfig(**kw, discretisation="reference", kernel="fused"))
    assert run_fused.substeps == run_plain.substeps
    np.testing.assert_allclose(run_fused.fields, run_plain.fields, atol=2e-5, rtol=0)
