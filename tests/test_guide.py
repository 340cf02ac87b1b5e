"""The training guide runs as written.

``docs/training_guide.txt`` is a verbatim copy of the user guide (a test checks it is
byte-identical to the seed guide as delivered, by its sha256). Its
text lost the code indentation, so this test

1. extracts the code blocks (maximal runs of code-looking lines, brackets tracked),
2. re-indents them with a small explicit re-indenter (rules below, tested on its own),
3. replaces ``zeroproofml`` by ``zpml_core``,
4. runs every block in order in one namespace — like a reader following the guide —
   with a fixture supplying the names the guide leaves to the reader (``model``,
   ``optimizer``, ``train_loader``, ``loss``, ``decoded``, ``bottom_mask``),
5. and checks each block's effect.

Re-indentation rules (enough for Python written in the usual style, and explicit):
a line ending in ``:`` opens a body one level deeper; ``class``/``import``/``from`` at the
start of a line go back to module level; ``def`` goes to the innermost enclosing
``class`` body (module level without one); lines inside open brackets keep the level of
the statement they continue (plus one level, cosmetic); anything else stays at the
current level.
"""

from __future__ import annotations

import builtins
import re
import symtable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "training_guide.txt"

_START = re.compile(
    r"""^(
        import\s+[\w.]+(\s+as\s+\w+)?(\s*,\s*[\w.]+)*$          # import a.b [as c]
      | from\s+[\w.]+\s+import\s+.+$                             # from a import b
      | (class|def)\s+\w+.*:$                                    # class / def header
      | with\s+.+:$                                              # with ...:
      | return(\s.*)?$
      | [A-Za-z_][\w.]*(\s*,\s*[A-Za-z_][\w.]*)*\s*=(?!=)\s*\S.*$  # assignment
      | [A-Za-z_][\w.]*(\(.*)$                                   # call expression
      | \)+[,:]?$                                                # closing brackets
    )""",
    re.VERBOSE,
)
#: lines the guide shows as formulas, not Python: recognised as code-looking but expected
#: not to be executable (listed so nothing is skipped silently)
MATH_BLOCKS = {"E = (P * Y_d - Q * Y_n)^2"}


def _depth_change(line: str) -> int:
    depth = 0
    quote = None
    for ch in line:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
    return depth


def extract_blocks(text: str) -> list[list[str]]:
    """Maximal runs of code-looking lines (a run continues while brackets are open)."""
    blocks: list[list[str]] = []
    current: list[str] = []
    depth = 0
    for raw in text.splitlines():
        line = raw.strip()
        code = bool(line) and (depth > 0 or bool(_START.match(line)))
        if code:
            current.append(line)
            depth += _depth_change(line)
        else:
            if current:
                blocks.append(current)
            current, depth = [], 0
    if current:
        blocks.append(current)
    return blocks


def reindent(lines: list[str], unit: str = "    ") -> str:
    """Re-indent flattened Python source (rules in the module docstring)."""
    out: list[str] = []
    level = 0
    class_levels: list[int] = []  # body level of each open class
    depth = 0
    for line in lines:
        if depth > 0:  # continuation inside brackets
            out.append(unit * (level + 1) + line if not line.startswith(")") else unit * level + line)
            depth += _depth_change(line)
            if depth == 0 and line.endswith(":"):
                level += 1
            continue
        head = line.split(None, 1)[0] if line else ""
        if head in ("import", "from") or head == "class":
            level = 0
            class_levels = []
        elif head == "def":
            level = class_levels[-1] if class_levels else 0
            while class_levels and class_levels[-1] > level:
                class_levels.pop()
        out.append(unit * level + line)
        depth += _depth_change(line)
        if depth == 0 and line.endswith(":"):
            if head == "class":
                class_levels.append(level + 1)
            level += 1
    return "\n".join(out) + "\n"


def free_names(source: str) -> set[str]:
    """Global names a block reads but neither defines nor gets from builtins."""
    top = symtable.symtable(source, "<guide>", "exec")
    defined = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    used: set[str] = set()

    def walk(t: symtable.SymbolTable) -> None:
        for s in t.get_symbols():
            if s.is_referenced() and (s.is_global() or t is top):
                used.add(s.get_name())
        for child in t.get_children():
            walk(child)

    walk(top)
    return {n for n in used - defined if not hasattr(builtins, n)}


# ---------------------------------------------------------------------------------------
# the extractor and re-indenter on their own


#: sha256 of the seed guide as delivered
GUIDE_SHA256 = "de5784e5cd0ef31b12c9e4db580373c67fc27d36d921fb4c6fa85ceb545b4403"


def test_guide_copy_is_verbatim() -> None:
    import hashlib

    data = GUIDE.read_bytes()
    assert hashlib.sha256(data).hexdigest() == GUIDE_SHA256


def test_reindent_class_and_methods() -> None:
    flat = [
        "class A(B):",
        "def __init__(self, n: int):",
        "super().__init__()",
        "self.f = g(",
        "n,",
        "1,",
        ")",
        "self.h = 2",
        "def forward(self, x):",
        "p, q = self.f(x).unbind(dim=-1)",
        "return p, q",
        "import os",
        "with ctx(1):",
        "run()",
    ]
    expected = (
        "class A(B):\n"
        "    def __init__(self, n: int):\n"
        "        super().__init__()\n"
        "        self.f = g(\n"
        "            n,\n"
        "            1,\n"
        "        )\n"
        "        self.h = 2\n"
        "    def forward(self, x):\n"
        "        p, q = self.f(x).unbind(dim=-1)\n"
        "        return p, q\n"
        "import os\n"
        "with ctx(1):\n"
        "    run()\n"
    )
    assert reindent(flat) == expected
    compile(expected, "<t>", "exec")


def test_extract_blocks_stops_at_prose() -> None:
    text = "Intro line.\nx = f(\n1,\n)\ny = 2\nSome prose follows here.\n- a bullet\nimport os\n"
    assert extract_blocks(text) == [["x = f(", "1,", ")", "y = 2"], ["import os"]]


def test_free_names() -> None:
    assert free_names("import torch\nx = model(y)\nclass A:\n    def f(self):\n        return z\n") == {
        "model", "y", "z"}


# ---------------------------------------------------------------------------------------
# the guide, verbatim


def guide_blocks() -> list[str]:
    blocks = [reindent(b) for b in extract_blocks(GUIDE.read_text(encoding="utf-8"))]
    return [b.replace("zeroproofml", "zpml_core") for b in blocks]


def test_guide_has_the_expected_blocks() -> None:
    blocks = guide_blocks()
    python = [b for b in blocks if b.strip() not in MATH_BLOCKS]
    assert {b.strip() for b in blocks} - {b.strip() for b in python} == MATH_BLOCKS
    assert len(python) == 7
    for b in python:
        compile(b, "<guide>", "exec")
    firsts = [b.splitlines()[0] for b in python]
    assert firsts == [
        "import torch",
        "from zpml_core.losses import LossConfig, SCMTrainingLoss",
        "from zpml_core.autodiff.policies import GradientPolicy, gradient_policy",
        "from zpml_core.training import SCMTrainer, TrainingConfig",
        "from zpml_core.losses import coverage, rejection_loss",
        "from zpml_core.training import TrainingConfig",
        "import torch",
    ]


#: names each block leaves to the reader, supplied by the fixture below
EXPECTED_FREE = [
    set(),
    set(),
    {"loss"},
    {"model", "optimizer", "train_loader", "loss_fn"},
    {"decoded", "bottom_mask"},
    set(),
    set(),
]


@pytest.fixture
def restore_torch_dtype() -> Any:
    """Restores torch's global state the guide's test changes (default dtype, thread
    count, RNG), so later tests in the same worker do not depend on test order."""
    torch = pytest.importorskip("torch")
    before = torch.get_default_dtype()
    threads = torch.get_num_threads()
    rng = torch.random.get_rng_state()
    yield
    torch.set_default_dtype(before)
    torch.set_num_threads(threads)
    torch.random.set_rng_state(rng)


def test_guide_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               restore_torch_dtype: Any) -> None:
    import torch

    from zpml_core import scm, strict_inference
    from zpml_core.autodiff.policies import GradientPolicy
    from zpml_core.utils.logging import JsonlLogger, read_jsonl

    monkeypatch.chdir(tmp_path)  # the logging block writes runs/…
    torch.manual_seed(0)
    torch.set_num_threads(1)
    blocks = [b for b in guide_blocks() if b.strip() not in MATH_BLOCKS]
    assert [free_names(b) - {"loss_fn"} for b in blocks] == [s - {"loss_fn"} for s in EXPECTED_FREE]
    ns: dict[str, Any] = {"__name__": "guide"}

    # 1. the projective head
    exec(blocks[0], ns)
    head = ns["RationalHead"](1)
    P, Q = head(torch.zeros(5, 1))
    assert P.shape == Q.shape == (5,)

    # the reader's own data: y = 1/(x − 0.25) with one exact pole sample
    x = torch.linspace(-1, 1, 65).unsqueeze(-1)
    with np.errstate(divide="ignore"):
        y = 1.0 / (x[:, 0] - 0.25)
    assert torch.isinf(y).any()
    ds = torch.utils.data.TensorDataset(x, y)
    ns["model"] = ns["RationalHead"](1)
    ns["optimizer"] = torch.optim.Adam(ns["model"].parameters(), lr=1e-3)
    ns["train_loader"] = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True)

    # 2. the loss stack
    exec(blocks[1], ns)
    assert type(ns["loss_fn"]).__name__ == "SCMTrainingLoss"
    assert ns["loss_fn"].config.lambda_rej == 0.01

    # 3. a policy context around backward: overrides the forward-time policy (decision #8)
    def scm_loss() -> Any:
        p, q = ns["model"](x)
        value, _ = scm.div(p, q)
        return (100.0 * value).sum()  # large upstream gradient: CLAMP would clip it

    def grads() -> list[Any]:
        g = [p.grad.clone() for p in ns["model"].parameters()]
        ns["model"].zero_grad()
        return g

    scm_loss().backward()  # default policy CLAMP at forward time
    clamped = grads()
    ns["loss"] = scm_loss()
    exec(blocks[2], ns)
    projected = grads()
    with ns["gradient_policy"](GradientPolicy.REJECT):
        scm_loss().backward()
    rejected = grads()
    assert all(float(g.abs().sum()) == 0.0 for g in rejected)
    assert any(not torch.equal(a, b) for a, b in zip(clamped, projected, strict=True))

    # 4. the trainer, with the guide's configuration (50 epochs, AMP, tau range)
    exec(blocks[3], ns)
    trainer, config = ns["trainer"], ns["config"]
    assert config.max_epochs == 50 and config.amp_enabled
    assert trainer.current_epoch == 50 and trainer.global_step == 150  # 3 batches an epoch
    assert all(np.isfinite(m["loss"]) for m in trainer.history)
    assert all(5e-5 <= m["tau_train"] < 2e-4 for m in trainer.history)
    assert trainer.history[-1]["loss"] < trainer.history[0]["loss"]

    # 5. coverage of strictly decoded outputs
    with torch.no_grad():
        p, q = ns["model"](x)
    decoded, bottom_mask, _ = strict_inference(p.float(), q.float())
    ns["decoded"], ns["bottom_mask"] = decoded, bottom_mask
    exec(blocks[4], ns)
    expected = 1.0 - bottom_mask.float().mean().item()
    assert float(ns["cov"]) == pytest.approx(expected)
    assert float(ns["rej"]) == pytest.approx(max(0.95 - expected, 0.0) ** 2, abs=1e-6)

    # 6. JSONL logging config — then train with it and read the log back
    exec(blocks[5], ns)
    hook = ns["config"].log_hook
    assert isinstance(hook, JsonlLogger)
    assert hook.path == Path("runs/scm_train_metrics.jsonl")
    from zpml_core.training import SCMTrainer

    SCMTrainer(model=ns["model"], optimizer=ns["optimizer"], loss_fn=ns["loss_fn"],
               train_loader=ns["train_loader"], config=ns["config"]).fit()
    hook.close()
    recs = read_jsonl(tmp_path / "runs" / "scm_train_metrics.jsonl", validate=True)
    assert len(recs) == 3
    for key in ("loss", "coverage", "bottom_frac", "tau_train", "denom_abs_min", "denom_abs_mean"):
        assert key in recs[0]["metrics"]

    # 7. float64 guidance
    exec(blocks[6], ns)
    assert torch.get_default_dtype() == torch.float64
    assert ns["RationalHead"](1)(torch.zeros(2, 1))[0].dtype == torch.float64
