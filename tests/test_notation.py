"""One meaning per symbol (the index's notation table): the retired uses do not come back.

Each pattern below is a way a chapter once wrote a symbol with a second meaning; the index
says what is written instead."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(ROOT.glob("chapters/*.ipynb")) + sorted(ROOT.glob("solutions/ch*/*.ipynb"))

RETIRED = {
    r"\\rho\s*\(": "ρ(W) as a spectral radius: write r(W)",
    r"\\rho\s*=\s*\\max": "ρ as a convergence factor: write r",
    r"\\mu_[jt]\b": "μ_j / μ_t: eigenvalues of a covariance are σ_j², NAdam's schedule is α_t",
    r"\\eta_\{t,\s*i\}": "η_{t,i}: the effective learning rate is ε_{t,i}",
    r"\\delta_t\b": "δ_t: the back-propagated error is e_t (δ is only the small constant)",
    r"\\hat\{?\s*[mv]\b": "Adam's moments are s and r (DL book, Algorithm 8.7)",
    r"\$m_t\$|\$v_t\$": "Adam's moments are s_t and r_t",
    r"\\mu\s*=\s*\(2y|\(2y\s*-\s*1\)\s*s\s*=\s*\\mu": "the margin has no symbol: write ỹs, ỹ = 2y − 1",
}


def _math(path: Path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return "\n".join(re.findall(r"\$\$.*?\$\$|\$[^$\n]+\$", text, flags=re.S))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_retired_meaning(path):
    math = _math(path)
    found = {why: m.group(0) for pattern, why in RETIRED.items() for m in [re.search(pattern, math)] if m}
    assert not found, f"{path.relative_to(ROOT)}: {found}"
