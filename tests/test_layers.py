"""zpml_core.layers: the rational layer and the projective head (issue 13 §5).

The shared math is checked against numpy's own polynomial evaluators on every backend;
the torch and equinox fronts against each other; training with SCMTrainer must find the
pole of ``1/(x - 0.25)``.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from numpy.polynomial import chebyshev as npcheb
from numpy.polynomial import polynomial as nppoly

from zpml_core.layers import (
    BasisFunction,
    ChebyshevBasis,
    CustomBasis,
    MonomialBasis,
    make_basis,
    projective_head,
    rational_pq,
)

POLE = 0.25
RNG = np.random.default_rng(13)
X = np.concatenate([np.linspace(-1.5, 1.5, 31), [0.0, -0.0, 1.0, -1.0]])


def _sin_basis(x: Any, degree: int) -> Any:
    """phi_k(x) = sin(k x + 1), written with the input's own namespace."""
    import array_api_compat

    ns = array_api_compat.array_namespace(x)
    return ns.stack([ns.sin(k * x + 1.0) for k in range(degree + 1)], axis=-1)


def _np_reference(basis: str, x: np.ndarray, coef: np.ndarray) -> np.ndarray:
    if basis == "monomial":
        return np.asarray(nppoly.polyval(x, coef))
    if basis == "chebyshev":
        return np.asarray(npcheb.chebval(x, coef))
    return sum(c * np.sin(k * x + 1.0) for k, c in enumerate(coef))


BASES = ["monomial", "chebyshev", "custom"]


def _basis(name: str) -> BasisFunction:
    return CustomBasis(_sin_basis) if name == "custom" else make_basis(name)


# --------------------------------------------------------------------- shared math


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize(("n", "m"), [(0, 0), (3, 2), (1, 4), (5, 5)])
def test_rational_pq_matches_numpy_polynomials(arr: Any, basis: str, n: int, m: int) -> None:
    a, b = RNG.standard_normal(n + 1), RNG.standard_normal(m + 1)
    P, Q = rational_pq(arr(X), arr(a), arr(b), basis=_basis(basis))
    np.testing.assert_allclose(arr.np(P), _np_reference(basis, X, a), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(arr.np(Q), _np_reference(basis, X, b), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("basis", BASES)
def test_basis_features_shape_and_columns(arr: Any, basis: str) -> None:
    x2 = X[:30].reshape(5, 6)
    feats = arr.np(_basis(basis)(arr(x2), 4))
    assert feats.shape == (5, 6, 5)
    for k in range(5):
        e = np.zeros(k + 1)
        e[k] = 1.0
        np.testing.assert_allclose(feats[..., k], _np_reference(basis, x2, e), rtol=1e-12,
                                   atol=1e-12)


def test_rational_pq_keeps_input_shape_and_promotes(arr: Any) -> None:
    x = arr(X[:30].reshape(3, 10), dtype="float32")
    P, Q = rational_pq(x, arr([1.0, 2.0]), arr([3.0, 0.0, 1.0]))
    assert tuple(P.shape) == (3, 10) and tuple(Q.shape) == (3, 10)
    assert arr.np(P).dtype == np.float64  # float32 input, float64 coefficients


@pytest.mark.parametrize("k", [1, 3])
def test_projective_head_matches_numpy_affine_map(arr: Any, k: int) -> None:
    h, w, c = RNG.standard_normal((7, 5)), RNG.standard_normal((k + 1, 5)), RNG.standard_normal(k + 1)
    P, Q = projective_head(arr(h), arr(w), arr(c), k)
    z = np.einsum("bf,of->bo", h, w) + c
    want_p = z[:, 0] if k == 1 else z[:, :k]
    np.testing.assert_allclose(arr.np(P), want_p, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(arr.np(Q), z[:, k], rtol=1e-12, atol=1e-12)
    assert arr.np(P).shape == ((7,) if k == 1 else (7, k))


# --------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "exc", "needle"),
    [
        ({"numerator": [[1.0]]}, ValueError, "numerator"),
        ({"denominator": []}, ValueError, "denominator"),
        ({"x": "int"}, TypeError, "x"),
        ({"basis": "legendre"}, ValueError, "basis"),
        ({"basis": 3}, TypeError, "basis"),
        ({"basis": CustomBasis(lambda x, d: x)}, ValueError, "basis"),
    ],
)
def test_rational_pq_bad_arguments_name_the_argument(arr: Any, kwargs: dict[str, Any],
                                                     exc: type, needle: str) -> None:
    args: dict[str, Any] = {"x": arr(X), "numerator": arr([1.0, 2.0]),
                            "denominator": arr([1.0])}
    for key in ("numerator", "denominator"):
        if key in kwargs:
            args[key] = arr(np.asarray(kwargs[key], dtype=np.float64))
    if kwargs.get("x") == "int":
        args["x"] = arr(np.arange(4), dtype="int64")
    basis = kwargs.get("basis")
    with pytest.raises(exc, match=needle):
        rational_pq(args["x"], args["numerator"], args["denominator"], basis=basis)


def test_projective_head_bad_shapes_name_the_argument(arr: Any) -> None:
    h, w, c = arr(np.ones((4, 3))), arr(np.ones((2, 3))), arr(np.ones(2))
    with pytest.raises(ValueError, match="backbone's output"):
        projective_head(arr(np.ones((4, 5))), w, c, 1)
    with pytest.raises(ValueError, match="weight"):
        projective_head(h, arr(np.ones((3, 3))), c, 1)
    with pytest.raises(ValueError, match="bias"):
        projective_head(h, w, arr(np.ones(3)), 1)
    with pytest.raises(TypeError, match="output_dim"):
        projective_head(h, w, c, True)
    with pytest.raises(ValueError, match="output_dim"):
        projective_head(h, w, c, 0)


@pytest.mark.parametrize(("value", "exc"), [(-1, ValueError), (True, TypeError),
                                            (1.0, TypeError), ("2", TypeError)])
def test_basis_degree_validation(value: Any, exc: type) -> None:
    with pytest.raises(exc, match="degree"):
        MonomialBasis()(np.ones(3), value)
    assert ChebyshevBasis()(np.ones(3), np.int64(2)).shape == (3, 3)


def test_import_layers_imports_no_framework() -> None:
    code = ("import sys, zpml_core.layers as L; L.rational_pq; "
            "print(sorted(m for m in ('torch', 'jax', 'equinox') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_unknown_attribute_raises_attribute_error() -> None:
    import zpml_core.layers as L

    with pytest.raises(AttributeError, match="NoSuchLayer"):
        L.NoSuchLayer  # noqa: B018
    assert {"SCMRationalLayer", "ProjectiveHead", "EquinoxSCMRationalLayer"} <= set(dir(L))


# --------------------------------------------------------------------- fronts

torch = pytest.importorskip("torch")


def _pole_data(n: int = 257) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(-1, 1, n)  # contains x = 0.25 exactly: y = +inf there (lifted to (1, 0))
    with np.errstate(divide="ignore"):
        return x, 1.0 / (x - POLE)


def _implicit(outputs: Any, lifted: Any, tau: Any = None) -> Any:
    from zpml_core.losses import implicit_loss

    P, Q = outputs
    Y_n, Y_d = lifted
    return implicit_loss(P, Q, Y_n, Y_d)


def test_torch_layer_init_and_signature() -> None:
    from zpml_core.layers import SCMRationalLayer

    torch.manual_seed(3)
    layer = SCMRationalLayer(3, 2)
    torch.manual_seed(3)
    expected = torch.empty(4).normal_(0.0, 1e-2)  # the documented rule: N(0, 0.01^2)
    assert [n for n, _ in layer.named_parameters()] == ["numerator", "denominator"]
    assert torch.equal(layer.numerator.detach(), expected)
    assert layer.denominator.tolist() == [1.0, 0.0, 0.0]
    assert layer.numerator.dtype == torch.get_default_dtype()
    assert isinstance(layer.basis, MonomialBasis)
    assert isinstance(SCMRationalLayer(1, 1, ChebyshevBasis()).basis, ChebyshevBasis)
    assert isinstance(SCMRationalLayer(1, 1, basis="chebyshev").basis, ChebyshevBasis)
    assert SCMRationalLayer(0, 0, dtype=torch.float64).denominator.dtype == torch.float64
    x = torch.linspace(-1, 1, 9, dtype=torch.float64).reshape(3, 3)
    P, Q = layer(x)
    assert P.shape == Q.shape == (3, 3)
    np.testing.assert_allclose(Q.detach().numpy(), 1.0)  # starts as Q = 1
    np.testing.assert_allclose(P.detach().numpy(),
                               nppoly.polyval(x.numpy(), expected.double().numpy()), rtol=1e-12)


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "needle"),
    [((-1, 1), {}, ValueError, "numerator_degree"),
     ((1, 2.0), {}, TypeError, "denominator_degree"),
     ((True, 1), {}, TypeError, "numerator_degree"),
     ((1, 1), {"basis": "fourier"}, ValueError, "basis")],
)
def test_torch_layer_validation(args: tuple[Any, ...], kwargs: dict[str, Any], exc: type,
                                needle: str) -> None:
    from zpml_core.layers import SCMRationalLayer

    with pytest.raises(exc, match=needle):
        SCMRationalLayer(*args, **kwargs)


def test_projective_head_is_the_guides_rational_head() -> None:
    from zpml_backends.torch_training import RationalHead

    from zpml_core.layers import ProjectiveHead

    torch.manual_seed(0)
    guide = RationalHead(1)
    head = ProjectiveHead(guide.backbone, 64)
    head.head.load_state_dict(guide.head.state_dict())
    x = torch.randn(11, 1)
    for a, b in zip(head(x), guide(x), strict=True):
        assert a.shape == (11,)
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    torch.manual_seed(0)
    multi = RationalHead(1, 3)
    head3 = ProjectiveHead(multi.backbone, 64, 3)
    head3.head.load_state_dict(multi.head.state_dict())
    for a, b in zip(head3(x), multi(x), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="backbone's output"):
        ProjectiveHead(guide.backbone, 32)(x)
    with pytest.raises(ValueError, match="in_features"):
        ProjectiveHead(guide.backbone, 0)
    with pytest.raises(TypeError, match="output_dim"):
        ProjectiveHead(guide.backbone, 64, output_dim=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="backbone"):
        ProjectiveHead(None, 64)  # type: ignore[arg-type]


@pytest.mark.autodiff
@pytest.mark.parametrize("basis", BASES)
def test_torch_layer_gradcheck(basis: str) -> None:
    from zpml_core.layers import SCMRationalLayer

    torch.manual_seed(1)
    layer = SCMRationalLayer(3, 2, _basis(basis), dtype=torch.float64)
    x = torch.linspace(-0.9, 0.9, 7, dtype=torch.float64, requires_grad=True)

    def f(x: Any, a: Any, b: Any) -> Any:
        return rational_pq(x, a, b, basis=layer.basis)

    assert torch.autograd.gradcheck(f, (x, layer.numerator, layer.denominator))
    # dP/da_k = phi_k(x) exactly (the independent basis evaluation)
    P, _ = layer(x.detach())
    P.sum().backward()
    assert layer.numerator.grad is not None and layer.denominator.grad is None
    eye = np.eye(4)
    want = [_np_reference(basis, x.detach().numpy(), eye[k]).sum() for k in range(4)]
    np.testing.assert_allclose(layer.numerator.grad.numpy(), want, rtol=1e-12, atol=1e-12)


def test_torch_layer_learns_the_pole_with_scmtrainer() -> None:
    from zpml_core.layers import SCMRationalLayer
    from zpml_core.training import ArrayLoader, SCMTrainer, TrainingConfig

    x, y = _pole_data()
    torch.manual_seed(0)
    layer = SCMRationalLayer(0, 1, dtype=torch.float64)
    trainer = SCMTrainer(
        model=layer, optimizer=torch.optim.Adam(layer.parameters(), lr=5e-2), loss_fn=_implicit,
        train_loader=ArrayLoader(torch.as_tensor(x), torch.as_tensor(y), batch_size=64,
                                 shuffle=True),
        config=TrainingConfig(max_epochs=80, seed=0))
    trainer.fit()
    b0, b1 = layer.denominator.detach().tolist()
    assert abs(-b0 / b1 - POLE) < 0.01, (b0, b1)  # Q's root is the pole (start: Q = 1)
    P, Q = (t.detach().numpy() for t in layer(torch.as_tensor(x)))
    far = np.abs(x - POLE) > 0.1
    assert np.max(np.abs(P[far] / Q[far] - y[far]) / np.abs(y[far])) < 0.05



@pytest.mark.slow
def test_torch_fronts_compile_fullgraph() -> None:
    from zpml_core.layers import ProjectiveHead, SCMRationalLayer

    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 9, dtype=torch.float64)
    layer = SCMRationalLayer(3, 2, "chebyshev", dtype=torch.float64)
    head = ProjectiveHead(torch.nn.Linear(1, 8), 8).double()
    for model, inp in ((layer, x), (head, x[:, None])):
        compiled = torch.compile(model, fullgraph=True)
        for a, b in zip(model(inp), compiled(inp), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)

def _sign_change_near_pole(Q: np.ndarray, x: np.ndarray, tol: float) -> bool:
    flips = np.nonzero(np.sign(Q[:-1]) != np.sign(Q[1:]))[0]
    return len(flips) == 1 and abs(x[flips[0]] - POLE) < tol


def test_torch_projective_head_learns_the_pole_with_scmtrainer() -> None:
    from zpml_core.layers import ProjectiveHead
    from zpml_core.losses import LossConfig, SCMTrainingLoss
    from zpml_core.training import ArrayLoader, SCMTrainer, TrainingConfig

    x, y = _pole_data()
    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.Tanh(),
                                   torch.nn.Linear(32, 32), torch.nn.Tanh())
    head = ProjectiveHead(backbone, 32).double()
    xt = torch.as_tensor(x[:, None])
    trainer = SCMTrainer(
        model=head, optimizer=torch.optim.Adam(head.parameters(), lr=3e-3),
        loss_fn=SCMTrainingLoss(LossConfig()),
        train_loader=ArrayLoader(xt, torch.as_tensor(y), batch_size=64, shuffle=True),
        config=TrainingConfig(max_epochs=60, seed=0))
    trainer.fit()
    with torch.no_grad():
        P, Q = (t.numpy() for t in head(xt))
    assert _sign_change_near_pole(Q, x, 0.02)
    far = np.abs(x - POLE) > 0.1
    assert np.max(np.abs(P[far] / Q[far] - y[far]) / np.abs(y[far])) < 0.35


# --------------------------------------------------------------------- equinox front


def _eqx() -> tuple[Any, Any, Any]:
    eqx = pytest.importorskip("equinox")
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    jax.config.update("jax_enable_x64", True)
    return eqx, jax, optax


@pytest.mark.parametrize("basis", BASES)
def test_torch_and_equinox_layers_agree(basis: str) -> None:
    eqx, jax, _ = _eqx()
    import jax.numpy as jnp

    from zpml_core.layers import EquinoxSCMRationalLayer, SCMRationalLayer

    torch.manual_seed(2)
    tl = SCMRationalLayer(4, 3, _basis(basis), dtype=torch.float64)
    with torch.no_grad():
        tl.denominator.copy_(torch.as_tensor(RNG.standard_normal(4)))
    el = EquinoxSCMRationalLayer(4, 3, _basis(basis), key=jax.random.PRNGKey(0),
                                 dtype=jnp.float64)
    el = eqx.tree_at(lambda m: (m.numerator, m.denominator), el,
                     (jnp.asarray(tl.numerator.detach().numpy()),
                      jnp.asarray(tl.denominator.detach().numpy())))
    x = X.reshape(5, 7)
    for a, b in zip(tl(torch.as_tensor(x)), el(jnp.asarray(x)), strict=True):
        np.testing.assert_allclose(a.detach().numpy(), np.asarray(b), rtol=1e-13, atol=1e-14)


def test_equinox_layer_init_validation_and_gradient() -> None:
    _, jax, _ = _eqx()
    import jax.numpy as jnp

    from zpml_core.layers import EquinoxSCMRationalLayer

    key = jax.random.PRNGKey(5)
    layer = EquinoxSCMRationalLayer(2, 3, "chebyshev", key=key, dtype=jnp.float64)
    np.testing.assert_array_equal(np.asarray(layer.numerator),
                                  1e-2 * np.asarray(jax.random.normal(key, (3,), jnp.float64)))
    assert np.asarray(layer.denominator).tolist() == [1.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="denominator_degree"):
        EquinoxSCMRationalLayer(1, -2, key=key)
    with pytest.raises(TypeError, match="numerator_degree"):
        EquinoxSCMRationalLayer(None, 1, key=key)  # type: ignore[arg-type]
    x = jnp.linspace(-0.9, 0.9, 7)

    def loss(m: Any) -> Any:
        P, Q = m(x)
        return jnp.sum(P) + jnp.sum(Q * Q)

    g = jax.grad(loss)(layer)
    eye = np.eye(4)
    feats = np.stack([_np_reference("chebyshev", np.asarray(x), eye[k]) for k in range(4)], -1)
    Q = feats @ np.asarray(layer.denominator)
    np.testing.assert_allclose(np.asarray(g.numerator), feats[:, :3].sum(0), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(g.denominator), 2 * feats.T @ Q, rtol=1e-12,
                               atol=1e-13)


def test_equinox_projective_head_matches_torch_front() -> None:
    eqx, jax, _ = _eqx()
    import jax.numpy as jnp

    from zpml_core.layers import EquinoxProjectiveHead, ProjectiveHead

    th = ProjectiveHead(torch.nn.Identity(), 4, 2).double()
    eh = EquinoxProjectiveHead(lambda v: v, 4, 2, key=jax.random.PRNGKey(0))
    eh = eqx.tree_at(lambda m: (m.head.weight, m.head.bias), eh,
                     (jnp.asarray(th.head.weight.detach().numpy()),
                      jnp.asarray(th.head.bias.detach().numpy())))
    h = RNG.standard_normal((6, 4))
    for a, b in zip(th(torch.as_tensor(h)), eh(jnp.asarray(h)), strict=True):
        np.testing.assert_allclose(a.detach().numpy(), np.asarray(b), rtol=1e-13, atol=1e-14)
    batched = EquinoxProjectiveHead(lambda v: v, 4, 2, key=jax.random.PRNGKey(0),
                                    vmap_backbone=False)
    assert batched(jnp.asarray(h))[0].shape == (6, 2)
    with pytest.raises(ValueError, match="backbone's output"):
        eh(jnp.ones((6, 3)))
    with pytest.raises(TypeError, match="vmap_backbone"):
        EquinoxProjectiveHead(lambda v: v, 4, key=jax.random.PRNGKey(0),
                              vmap_backbone=1)  # type: ignore[arg-type]


def test_equinox_layer_learns_the_pole_with_scmtrainer() -> None:
    _, jax, optax = _eqx()
    import jax.numpy as jnp

    from zpml_core.layers import EquinoxSCMRationalLayer
    from zpml_core.training import ArrayLoader, SCMTrainer, TrainingConfig

    x, y = _pole_data()
    layer = EquinoxSCMRationalLayer(0, 1, "chebyshev", key=jax.random.PRNGKey(0),
                                    dtype=jnp.float64)
    trainer = SCMTrainer(model=layer, optimizer=optax.adam(5e-2), loss_fn=_implicit,
                         train_loader=ArrayLoader(jnp.asarray(x), jnp.asarray(y),
                                                  batch_size=64, shuffle=True),
                         config=TrainingConfig(max_epochs=80, seed=0))
    trainer.fit()
    trained = trainer.model
    assert isinstance(trained, EquinoxSCMRationalLayer)
    b0, b1 = np.asarray(trained.denominator).tolist()
    assert abs(-b0 / b1 - POLE) < 0.01, (b0, b1)
    P, Q = (np.asarray(t) for t in trained(jnp.asarray(x)))
    far = np.abs(x - POLE) > 0.1
    assert np.max(np.abs(P[far] / Q[far] - y[far]) / np.abs(y[far])) < 0.05


def test_equinox_projective_head_learns_the_pole_with_scmtrainer() -> None:
    eqx, jax, optax = _eqx()
    import jax.numpy as jnp

    from zpml_core.layers import EquinoxProjectiveHead
    from zpml_core.losses import LossConfig, SCMTrainingLoss
    from zpml_core.training import ArrayLoader, SCMTrainer, TrainingConfig

    x, y = _pole_data()
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    mlp = eqx.nn.MLP(1, 32, 32, 1, activation=jnp.tanh, final_activation=jnp.tanh, key=k1)
    head = EquinoxProjectiveHead(mlp, 32, key=k2)
    head = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a)
                                  else a, head)
    trainer = SCMTrainer(model=head, optimizer=optax.adam(3e-3),
                         loss_fn=SCMTrainingLoss(LossConfig()),
                         train_loader=ArrayLoader(jnp.asarray(x[:, None]), jnp.asarray(y),
                                                  batch_size=64, shuffle=True),
                         config=TrainingConfig(max_epochs=60, seed=0))
    trainer.fit()
    P, Q = (np.asarray(t) for t in trainer.model(jnp.asarray(x[:, None])))
    assert _sign_change_near_pole(Q, x, 0.02)
    far = np.abs(x - POLE) > 0.1
    assert np.max(np.abs(P[far] / Q[far] - y[far]) / np.abs(y[far])) < 0.35
