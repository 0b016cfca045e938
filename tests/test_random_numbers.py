"""The counter-based generator: known answers, the compiled loop against torch arithmetic, statistics, forcing."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.autograd import gradcheck

from neuradiff.physics import RandomForcing, VoidModel, VoidParameters, rollout
from neuradiff.physics.forcing import step_seed
from neuradiff.physics.random_numbers import (
    PHILOX_KEY,
    PhiloxNumbers,
    TorchNumbers,
    draws_key,
    philox4x32,
    philox_field,
    philox_words,
)
from neuradiff.physics.validation_models import SpinodalModel
from neuradiff.synth.simulation import SimulationConfig
from physics_helpers import smooth_void_state, tensor_params

LEARNED = VoidParameters.default_learned()

# Philox4x32-10 known answers published with the algorithm (counter words, key words, output words).
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize(("counter", "key", "expected"), KNOWN_ANSWERS)
def test_philox_reproduces_the_published_known_answers(counter, key, expected):
    out = philox4x32([torch.tensor([c]) for c in counter], key)
    assert [int(w) for w in out] == list(expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 3, 5, 8, 1001, 70_001])
def test_the_compiled_loop_gives_the_torch_arithmetics_numbers(dtype, n):
    key = step_seed(9, 4)
    for field in (0, 7):
        u = philox_field("uniform", key, field, (n,), dtype)
        assert torch.equal(u, philox_field("uniform", key, field, (n,), dtype, compiled=False))
        # the uniform numbers are the words themselves, scaled
        q = -(-n // 4)
        words = philox_words(key, field, q).reshape(-1)[:n]
        expected = (words >> 8).double() * 2.0**-24 if dtype == torch.float32 else words.double() * 2.0**-32
        assert torch.equal(u.double(), expected)
        z = philox_field("normal", key, field, (n,), dtype)
        ref = philox_field("normal", key, field, (n,), dtype, compiled=False)
        tol = 6e-7 if dtype == torch.float32 else 1e-12
        assert bool(((z - ref).abs() <= tol * ref.abs().clamp(min=1)).all())


def test_the_numbers_do_not_depend_on_the_thread_count():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = philox_field("normal", 5, 2, (3, 5, 128, 128), torch.float32)
        torch.set_num_threads(2)
        two = philox_field("normal", 5, 2, (3, 5, 128, 128), torch.float32)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


def test_uniform_and_normal_fields_have_their_distributions():
    n = 1 << 18
    z = philox_field("normal", step_seed(1, 2), 0, (n,), torch.float32).double().numpy()
    se = 1 / math.sqrt(n)
    assert abs(z.mean()) < 5 * se
    assert abs(z.var() - 1) < 5 * math.sqrt(2) * se
    assert abs((z**4).mean() - 3) < 5 * math.sqrt(96) * se
    assert stats.kstest(z, "norm").pvalue > 1e-4
    u = philox_field("uniform", step_seed(1, 2), 1, (n,), torch.float32).double().numpy()
    assert float(u.min()) >= 0 and float(u.max()) < 1
    assert stats.kstest(u, "uniform").pvalue > 1e-4
    # neighbouring elements, and two fields of one key, are uncorrelated
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 5 * se
    assert abs(np.corrcoef(z, u)[0, 1]) < 5 * se


def test_a_sources_fields_come_in_turn_and_torch_numbers_are_torchs():
    a, b = PhiloxNumbers(11), PhiloxNumbers(11)
    first, second = a.rand((4, 4), torch.float32), a.rand((4, 4), torch.float32)
    assert torch.equal(first, b.rand((4, 4), torch.float32)) and not torch.equal(first, second)
    g = torch.Generator().manual_seed(3)
    x = TorchNumbers(torch.Generator().manual_seed(3)).randn((2, 3), torch.float64)
    assert torch.equal(x, torch.randn((2, 3), generator=g, dtype=torch.float64))
    with pytest.raises(ValueError, match="64-bit"):
        PhiloxNumbers(-1)


def test_philox_forcing_is_keyed_by_seed_and_step_and_the_default_stays_torchs():
    model, state = VoidModel(), smooth_void_state(n=16, radius=4.0).float()
    f = RandomForcing(4, generator="philox")

    def fields(forcing, step):  # keyed draws, made into fields as the plain path makes them
        keyed = forcing.draws(model, step, state)
        assert sorted(keyed) == [PHILOX_KEY] and draws_key(keyed) == step_seed(forcing.seed, step)
        return model.realise(keyed, state)

    d0, again, d1 = fields(f, 0), fields(f, 0), fields(f, 1)
    assert sorted(d0) == ["amplitude", "gate", "xi"] and all(torch.equal(d0[k], again[k]) for k in d0)
    expected = model.draw(PhiloxNumbers(step_seed(4, 0)), tuple(state.shape), state.dtype)
    assert all(torch.equal(d0[k], expected[k]) for k in expected)
    assert not torch.equal(d0["xi"], d1["xi"])
    assert not torch.equal(d0["xi"], fields(RandomForcing(5, generator="philox"), 0)["xi"])
    assert RandomForcing(4, generator="philox").draws(SpinodalModel(), 0, state) is None  # no random terms
    assert model.random_terms and not SpinodalModel().random_terms
    old = RandomForcing(4).draws(model, 0, state)
    assert torch.equal(
        old["xi"], model.draw(torch.Generator().manual_seed(step_seed(4, 0)), state.shape, state.dtype)["xi"]
    )
    assert "philox" in repr(f) and repr(RandomForcing(4)) == "RandomForcing(seed=4)"
    with pytest.raises(ValueError, match="generator must be one of"):
        RandomForcing(4, generator="mt")
    with pytest.raises(ValueError, match="generator must be one of"):
        SimulationConfig(generator="mt").validate()


@pytest.mark.slow
def test_gradcheck_a_rollout_with_philox_noise():
    model = VoidModel("conservative")

    def f(s, *values):
        p = VoidParameters().replace(**dict(zip(LEARNED, values)))
        forcing = RandomForcing(3, generator="philox")
        return rollout(model, s, p, dt=0.02, n_steps=1, forcing=forcing, diagnostics=False).final

    _, leaves = tensor_params()
    state = smooth_void_state(n=8, radius=2.0).requires_grad_(True)
    assert gradcheck(f, (state, *leaves), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize(("path", "dtype"), [("-DPHILOX_NO_AVX512", torch.float32), ("-DPHILOX_PLAIN", torch.float64)])
def test_every_vector_path_of_the_compiled_loop_gives_the_same_numbers(path, dtype, tmp_path, monkeypatch):
    # The loop makes the words with AVX-512 or AVX2 instructions where the compiler targets them, else in plain C;
    # a build with the wider paths switched off must give the same numbers to the bit (on a CPU without AVX-512
    # or AVX2 the builds coincide).
    from neuradiff.physics import fused

    monkeypatch.setenv("NEURADIFF_KERNEL_CACHE", str(tmp_path))
    if fused._compiler() is None:
        pytest.skip("no C compiler")
    suffix = "f32" if dtype == torch.float32 else "f64"
    other = fused._build("philox", suffix, (path,))
    for kind in ("uniform", "normal"):
        for n, threads in ((1, 1), (1001, 1), (70_001, 2)):
            q = -(-n // 4)
            out = torch.empty(4 * q, dtype=dtype)
            getattr(other, f"philox_{kind}_{suffix}")(5, 3, 2, q, out.data_ptr(), threads)
            assert torch.equal(out[:n], philox_field(kind, (3 << 32) | 5, 2, (n,), dtype)), (kind, n)
