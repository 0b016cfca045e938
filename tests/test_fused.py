"""The fused void-model kernel against the plain PyTorch path (the reference), and its float64 gradients."""

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from neuradiff.physics import RandomForcing, Simulator, VoidModel, VoidParameters, rollout, single_void
from neuradiff.physics.fused import KERNEL_LEARNED, fused_unavailable
from neuradiff.training.config import FitConfig
from physics_helpers import smooth_void_state, tensor_params

LEARNED = VoidParameters.default_learned()


@pytest.fixture(scope="module", autouse=True)
def _kernel_built():
    for dtype in (torch.float32, torch.float64):  # builds both libraries (once per cache folder)
        reason = fused_unavailable(
            torch.zeros(1, 3, 4, 4, dtype=dtype), VoidParameters(), boundary="periodic", face="upwind"
        )
        if reason is not None:
            # no compiler: the plain path stands in (tested elsewhere); a compiler that fails on the source is a bug
            assert "compiling the fused kernel failed" not in reason, reason
            pytest.skip(reason)


def _rough_state(dtype, batch=2):
    g = torch.Generator().manual_seed(0)
    s = single_void((24, 20), 5.0, dtype=dtype)
    s = s + 0.01 * torch.randn(s.shape, generator=g, dtype=dtype)
    s[:, 1] -= 0.004  # c_i below zero in places: zero mobilities, the continued entropy
    s[:, 2].clamp_(0.0, 1.0)
    return s.repeat(batch, 1, 1, 1)


def test_the_kernel_covers_the_learned_parameters():
    assert set(KERNEL_LEARNED) == set(LEARNED)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("imex", [False, True])
@pytest.mark.parametrize("boundary", ["periodic", "no-flux"])
def test_fused_update_and_gradients_equal_the_plain_path(dtype, imex, boundary):
    state = _rough_state(dtype).requires_grad_(True)
    params, _ = tensor_params()
    params = params.replace(**{k: getattr(params, k).detach().to(dtype).requires_grad_(True) for k in LEARNED})
    leaves = [getattr(params, k) for k in LEARNED]
    weight = torch.sin(torch.arange(state.numel(), dtype=dtype)).reshape(state.shape)
    out = {}
    for kernel in ("torch", "fused"):
        model = VoidModel("conservative", kernel=kernel, boundary=boundary)
        u = model.euler_update(state, params, 0.05, 1.0, implicit_local=imex)
        out[kernel] = (u, torch.autograd.grad((u * weight).sum(), [state, *leaves]))
    (u_ref, g_ref), (u_fused, g_fused) = out["torch"], out["fused"]
    # float64: equal to round-off; float32: within float32 round-off of the sums over the grid
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    ptol = 1e-12 if dtype == torch.float64 else 5e-4
    assert float((u_ref - u_fused).detach().abs().max()) <= tol
    assert float((g_ref[0] - g_fused[0]).abs().max()) <= tol * float(g_ref[0].abs().max())
    for name, a, b in zip(LEARNED, g_ref[1:], g_fused[1:]):
        assert float((a - b).abs()) <= ptol * max(float(a.abs()), 1e-3), name


@pytest.mark.parametrize(("integrator", "generator"), [("euler", "torch"), ("imex", "torch"), ("euler", "philox")])
def test_fused_rollout_with_noise_and_split_steps_matches_the_plain_one(integrator, generator):
    state, leaves = smooth_void_state(n=8, radius=2.0), tensor_params()[1]
    state = state.clone()
    state[0, 1, 1, 1:4] = -2e-3
    state.requires_grad_(True)
    finals = []
    for kernel in ("torch", "fused"):
        p = VoidParameters().replace(**dict(zip(LEARNED, leaves)))
        tr = rollout(
            VoidModel("conservative", kernel=kernel),
            state,
            p,
            dt=0.3,
            n_steps=2,
            integrator=integrator,
            forcing=RandomForcing(3, generator=generator),
            checkpoint_every=2,
            diagnostics=False,
        )
        assert tr.substeps > 2
        finals.append((tr.final, torch.autograd.grad(tr.final.pow(2).sum(), [state, *leaves])))
    assert torch.allclose(finals[0][0], finals[1][0], rtol=0, atol=1e-12)
    for a, b in zip(finals[0][1], finals[1][1]):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
        assert bool(torch.isfinite(a).all())


@pytest.mark.slow
@pytest.mark.parametrize(("integrator", "boundary"), [("euler", "periodic"), ("imex", "no-flux")])
def test_gradcheck_fused_step_with_seeded_noise(integrator, boundary):
    model = VoidModel("conservative", kernel="fused", boundary=boundary)
    state = smooth_void_state(n=8, radius=2.0).clone()
    state[0, 1, 1, 1:3] = -2e-3
    _, leaves = tensor_params()

    def f(s, *values):
        p = VoidParameters().replace(**dict(zip(LEARNED, values)))
        return rollout(
            model, s, p, dt=0.02, n_steps=1, integrator=integrator, forcing=RandomForcing(3), diagnostics=False
        ).final

    assert gradcheck(f, (state.requires_grad_(True), *leaves), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_where_the_kernel_does_not_apply_the_plain_path_is_used():
    state = _rough_state(torch.float64, batch=1)
    p = VoidParameters()
    assert fused_unavailable(state, p, boundary="periodic", face="mean") is not None
    fused = VoidModel("conservative", kernel="fused", face_mobility="mean").euler_update(state, p, 0.05, 1.0)
    plain = VoidModel("conservative", face_mobility="mean").euler_update(state, p, 0.05, 1.0)
    assert torch.equal(fused, plain)
    with pytest.raises(ValueError, match="kernel"):
        VoidModel("conservative", kernel="cuda")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("forcing_grad", [True, False])
def test_fused_substep_projects_counts_and_passes_the_forcing_gradient(dtype, forcing_grad):
    state = _rough_state(dtype).requires_grad_(True)
    g = torch.Generator().manual_seed(1)
    forcing = (0.05 * torch.randn(state.shape, generator=g, dtype=dtype)).requires_grad_(forcing_grad)
    params, _ = tensor_params()
    params = params.replace(**{k: getattr(params, k).detach().to(dtype).requires_grad_(True) for k in LEARNED})
    leaves = [getattr(params, k) for k in LEARNED]
    weight = torch.cos(torch.arange(state.numel(), dtype=dtype)).reshape(state.shape)
    out = {}
    for kernel in ("torch", "fused"):
        new, counts = VoidModel("conservative", kernel=kernel).euler_substep(
            state, params, 0.05, 1.0, implicit_local=True, forcing=forcing, forcing_divisor=3
        )
        inputs = [state, forcing, *leaves] if forcing_grad else [state, *leaves]
        out[kernel] = (new, counts, torch.autograd.grad((new * weight).sum(), inputs))
    (n_ref, c_ref, g_ref), (n_fused, c_fused, g_fused) = out["torch"], out["fused"]
    assert int(c_ref[:, 2].sum()) > 0  # the clamp of eta is active somewhere
    assert torch.equal(c_ref, c_fused)
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    assert float((n_ref - n_fused).detach().abs().max()) <= tol
    assert float(n_fused[:, 2].detach().min()) >= 0.0 and float(n_fused[:, 2].detach().max()) <= 1.0
    for a, b in zip(g_ref[:2], g_fused[:2]):  # the state's (and the forcing's) gradient
        assert float((a - b).abs().max()) <= tol * float(a.abs().max())
    for name, a, b in zip(LEARNED, g_ref[-len(LEARNED) :], g_fused[-len(LEARNED) :]):
        assert float((a - b).abs()) <= (1e-10 if dtype == torch.float64 else 5e-4) * max(float(a.abs()), 1e-3), name


def test_a_fit_can_choose_the_fused_kernel():
    sim = FitConfig(kernel="fused").simulator(1.0, cropped=True)
    assert (sim.model.kernel, sim.model.boundary) == ("fused", "no-flux")
    assert Simulator.from_dict(sim.to_dict()) == sim
    assert "kernel" not in Simulator().to_dict()  # the default leaves model files as they were
    with pytest.raises(ValueError, match="kernel"):
        FitConfig(kernel="gpu").validate()


def test_fits_use_the_fused_kernel_by_default_where_it_applies():
    assert FitConfig().kernel_name() == "fused"
    assert FitConfig().simulator(1.0).model.kernel == "fused"
    assert FitConfig(discretisation="reference").kernel_name() == "fused"  # the reference kernel, explicit steps
    assert FitConfig(kernel="torch").simulator(1.0).model.kernel == "torch"
    reference = FitConfig(kernel="fused", discretisation="reference", integrator="euler")
    reference.validate()
    assert reference.simulator(1.0).model.kernel == "fused"


def test_a_simulation_can_step_with_the_fused_kernel():
    from neuradiff.synth.simulation import SimulationConfig, run_simulation

    kw = {"initial": "single-disk", "size": 32, "steps": 60, "save_every": 20, "stochastic": True, "seed": 3}
    plain = run_simulation(SimulationConfig(**kw))
    fused = run_simulation(SimulationConfig(**kw, kernel="fused"))
    assert fused.config.to_dict()["kernel"] == "fused"
    assert fused.substeps == plain.substeps
    np.testing.assert_allclose(fused.fields, plain.fields, atol=2e-5, rtol=0)
    with pytest.raises(ValueError, match="kernel"):
        SimulationConfig(**kw, kernel="gpu").validate()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("boundary", ["periodic", "no-flux"])
def test_the_stability_estimate_from_the_kernel_equals_the_plain_one(dtype, boundary):
    s = _rough_state(dtype)
    s[0, 0, 3, 4] = -0.002  # a negative c_v: the low-concentration term with its wrapped neighbours
    p = VoidParameters(L=3.0, kappa_eta=2.0)
    plain, fused = VoidModel(boundary=boundary), VoidModel(boundary=boundary, kernel="fused")
    for rate in ("stability_rate", "implicit_stability_rate"):
        a = float(getattr(plain, rate)(s, p, 0.7))
        b = float(getattr(fused, rate)(s, p, 0.7))
        assert b == pytest.approx(a, rel=1e-6 if dtype == torch.float32 else 1e-12), rate
    bad = s.clone()
    bad[1, 2, 5, 5] = float("nan")
    assert not torch.isfinite(fused.stability_rate(bad, p, 1.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("imex", [False, True])
def test_several_substeps_in_one_call_equal_single_calls(dtype, imex):
    from neuradiff.physics.fused import fused_step, fused_substeps

    s0 = _rough_state(dtype)
    g = torch.Generator().manual_seed(1)
    f0 = 1e-3 * torch.randn(s0.shape, generator=g, dtype=dtype)
    f0[:, 2] += 0.02  # pushes eta over 1 in places: the clamp's mask matters
    kw = {"imex": imex, "log_floor": 1e-3, "saturation_floor": 1e-2, "forcing_divisor": 3, "boundary": "no-flux"}
    results = []
    for many in (False, True):
        leaves = [torch.tensor(getattr(VoidParameters(), n), dtype=dtype, requires_grad=True) for n in LEARNED]
        p = VoidParameters().replace(**dict(zip(LEARNED, leaves)))
        s = s0.clone().requires_grad_(True)
        f = f0.clone().requires_grad_(True)
        if many:
            out, counts = fused_substeps(s, p, 0.05, 0.9, 3, forcing=f, **kw)
        else:
            out, counts = s, 0
            for _ in range(3):
                out, c = fused_step(out, p, 0.05, 0.9, forcing=f, project=True, **kw)
                counts = counts + c
        loss = (out * torch.linspace(0.5, 1.5, out.numel(), dtype=dtype).reshape(out.shape)).sum()
        results.append((out.detach(), counts, torch.autograd.grad(loss, [s, f, *leaves])))
    (a_out, a_counts, a_grads), (b_out, b_counts, b_grads) = results
    assert torch.equal(a_out, b_out) and torch.equal(a_counts, b_counts)
    rel = 1e-12 if dtype == torch.float64 else 1e-5
    for name, a, b in zip(["state", "forcing", *LEARNED], a_grads, b_grads):
        assert float((a - b).abs().max()) <= rel * max(float(a.abs().max()), 1e-6), name


@pytest.mark.parametrize("project", [False, True])
def test_a_step_with_nothing_to_differentiate_gives_the_same_bits_without_autograd(project):
    """Under no_grad (or with no input that requires a gradient) the kernel is called without autograd's
    bookkeeping: the same state and counts, no graph."""
    from neuradiff.physics.fused import fused_step, fused_substeps

    s = _rough_state(torch.float32)
    f = 1e-3 * torch.randn(s.shape, generator=torch.Generator().manual_seed(2)) if project else None
    leaves = [torch.tensor(getattr(VoidParameters(), n), requires_grad=True) for n in LEARNED]
    p = VoidParameters().replace(**dict(zip(LEARNED, leaves)))
    kw = {"imex": True, "log_floor": 1e-3, "saturation_floor": 1e-2, "forcing": f, "project": project}
    recorded, counts = fused_step(s, p, 0.05, 1.0, **kw)
    with torch.no_grad():
        bare, bare_counts = fused_step(s, p, 0.05, 1.0, **kw)
    plain, plain_counts = fused_step(s, VoidParameters(), 0.05, 1.0, **kw)  # float parameters: nothing to record
    assert recorded.grad_fn is not None and bare.grad_fn is None and plain.grad_fn is None
    assert torch.equal(recorded.detach(), bare) and torch.equal(bare, plain)
    assert torch.equal(counts, bare_counts) and torch.equal(counts, plain_counts)
    if project:
        kw.pop("project")
        many, many_counts = fused_substeps(s, p, 0.05, 1.0, 3, **kw)
        with torch.no_grad():
            bare, bare_counts = fused_substeps(s, p, 0.05, 1.0, 3, **kw)
        assert many.grad_fn is not None and bare.grad_fn is None
        assert torch.equal(many.detach(), bare) and torch.equal(many_counts, bare_counts)


@pytest.mark.parametrize("count", [1, 2, 3, 4])
@pytest.mark.parametrize("threads", [1, 2])
def test_substeps_without_a_tape_in_one_call_equal_the_steps_one_by_one(count, threads):
    from neuradiff.physics.fused import fused_step, fused_substeps

    s = _rough_state(torch.float32, batch=3)
    f = 1e-3 * torch.randn(s.shape, generator=torch.Generator().manual_seed(4))
    p = VoidParameters()
    kw = {"imex": True, "log_floor": 1e-3, "saturation_floor": 1e-2, "forcing": f}
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        x, total = s, torch.zeros((3, 3), dtype=torch.int64)
        for _ in range(count):
            x, c = fused_step(x, p, 0.05, 1.0, project=True, **kw)
            total += c
        with torch.no_grad():
            many, many_counts = fused_substeps(s, p, 0.05, 1.0, count, **kw)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(many, x) and torch.equal(many_counts, total)
    assert int(total.sum()) > 0  # the projection had work to do
    assert torch.equal(s, _rough_state(torch.float32, batch=3))  # the input is left alone


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("batch", "shape"), [(1, (64, 40)), (3, (32, 24))])  # rows split / batch elements shared
def test_results_do_not_depend_on_the_thread_count(dtype, batch, shape):
    from neuradiff.physics.fused import fused_forcing, fused_step, fused_substeps

    g = torch.Generator().manual_seed(3)
    s0 = single_void(shape, 9.0, dtype=dtype).repeat(batch, 1, 1, 1)
    s0 = (s0 + 0.01 * torch.randn(s0.shape, generator=g, dtype=dtype)).contiguous()
    s0[:, 1] -= 0.004
    f0 = 1e-3 * torch.randn(s0.shape, generator=g, dtype=dtype)
    f0[:, 2] += 0.02
    draws = VoidModel().draw(torch.Generator().manual_seed(6), tuple(s0.shape), dtype)
    draws["gate"][:, :3] = 0.0  # cascades in a few rows
    results = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            leaves = [torch.tensor(getattr(VoidParameters(), n), dtype=dtype, requires_grad=True) for n in LEARNED]
            p = VoidParameters(noise=0.05).replace(**dict(zip(LEARNED, leaves)))
            s = s0.clone().requires_grad_(True)
            out, counts = fused_step(s, p, 0.02, 1.0, imex=False, log_floor=1e-3, saturation_floor=1e-2)
            kw = {"log_floor": 1e-3, "saturation_floor": 1e-2}
            out, more = fused_substeps(out, p, 0.02, 1.0, 2, imex=True, forcing=f0, **kw)
            out = out + fused_forcing(out, p, draws, 0.3, 1.0, eta_max=0.8)  # and a stochastic increment
            loss = (out * torch.linspace(0.5, 1.5, out.numel(), dtype=dtype).reshape(out.shape)).sum()
            results.append((out.detach(), counts + more, torch.autograd.grad(loss, [s, *leaves])))
    finally:
        torch.set_num_threads(before)
    (a_out, a_counts, a_grads), (b_out, b_counts, b_grads) = results
    assert torch.equal(a_out, b_out) and torch.equal(a_counts, b_counts)
    assert int(a_counts.sum()) > 0  # the projection had work to do
    for name, a, b in zip(["state", *LEARNED], a_grads, b_grads):
        assert torch.equal(a, b), name


def test_gradcheck_several_substeps_with_a_forcing():
    from neuradiff.physics.fused import fused_substeps

    s0 = _rough_state(torch.float64, batch=1)[:, :, :10, :9].contiguous()
    f0 = 1e-3 * torch.randn(s0.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    p, leaves = tensor_params()

    def run(s, f, *vals):
        q = p.replace(**dict(zip(LEARNED, vals)))
        return fused_substeps(s, q, 0.02, 1.0, 3, forcing=f, imex=True, log_floor=1e-3, saturation_floor=1e-2)[0]

    inputs = (s0.clone().requires_grad_(True), f0.clone().requires_grad_(True), *leaves)
    assert gradcheck(run, inputs, eps=1e-7, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_stochastic_increment_from_the_kernel_equals_the_plain_one(dtype):
    s0 = _rough_state(dtype)
    s0[0, 0, 2, 3] = 0.0  # a cell exactly empty: zero face mobilities, no noise flux and no NaN gradient
    plain, fused = VoidModel(), VoidModel(kernel="fused")
    draws = plain.draw(torch.Generator().manual_seed(4), tuple(s0.shape), dtype)
    draws["gate"][:, :4] = 0.0  # cascades in a few rows
    results = []
    for model in (plain, fused):
        leaves = [torch.tensor(getattr(VoidParameters(), n), dtype=dtype, requires_grad=True) for n in LEARNED]
        p = VoidParameters(noise=0.05).replace(**dict(zip(LEARNED, leaves)))
        s = s0.clone().requires_grad_(True)
        inc = model.forcing_increment(s, p, draws, 0.3, 0.8)
        weight = torch.linspace(-1.0, 2.0, inc.numel(), dtype=dtype).reshape(inc.shape)
        results.append((inc.detach(), torch.autograd.grad((inc * weight).sum(), [s, *leaves], allow_unused=True)))
    (a, ga), (b, gb) = results
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    assert float((a - b).abs().max()) <= tol * float(a.abs().max())
    for name, x, y in zip(["state", *LEARNED], ga, gb):
        x = torch.zeros(()) if x is None else x
        y = torch.zeros(()) if y is None else y
        assert bool(torch.isfinite(y).all()), name
        scale = max(float(x.abs().max()), 1e-8)
        assert float((x - y).abs().max()) <= (1e-9 if dtype == torch.float64 else 1e-4) * scale, name


def test_gradcheck_the_stochastic_increment():
    from neuradiff.physics.fused import fused_forcing

    s0 = _rough_state(torch.float64, batch=1)[:, :, :9, :8].contiguous()
    draws = VoidModel().draw(torch.Generator().manual_seed(5), tuple(s0.shape), torch.float64)
    p, leaves = tensor_params()

    def run(s, *vals):
        q = p.replace(**dict(zip(LEARNED, vals)))
        return fused_forcing(s, q, draws, 0.1, 1.0, eta_max=0.8)

    assert gradcheck(run, (s0.clone().requires_grad_(True), *leaves), eps=1e-7, atol=1e-7, rtol=1e-4)


def test_the_kernel_logarithm_is_as_accurate_as_documented():
    # Every 97th float in [1e-6, 4) plus the powers of two and their neighbours: the documented bounds are
    # 1.16 ulp where |ln x| > 1e-3, 1.03e-7 relative and 5.1e-7 absolute (over every float in that range).
    from neuradiff.physics.fused import kernel_log

    lo = int(np.float32(1e-6).view(np.int32))
    hi = int(np.float32(4.0).view(np.int32))
    bits = np.arange(lo, hi, 97, dtype=np.int32)
    twos = np.float32(2.0) ** np.arange(-19, 2, dtype=np.float32)
    x = np.concatenate([bits.view(np.float32), twos, np.nextafter(twos, 0), np.nextafter(twos, 8)])
    got = kernel_log(torch.from_numpy(x)).numpy().astype(np.float64)
    exact = np.log(x.astype(np.float64))
    err = np.abs(got - exact)
    big = np.abs(exact) > 1e-3
    ulp = err[big] / np.spacing(np.abs(exact[big]).astype(np.float32)).astype(np.float64)
    assert ulp.max() <= 1.16
    nz = exact != 0
    assert (err[nz] / np.abs(exact[nz])).max() <= 1.03e-7
    assert err.max() <= 5.1e-7
