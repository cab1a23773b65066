import os
import sys

# A flat layout without a package: make the modules and the scripts in tools/ importable from tests/.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, 'tools')]

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def fp32_on_every_cpu(monkeypatch):
    """--precision auto means bf16 on CPUs with bf16 units: pin it to fp32 in-process, so that the tests see
    the same numbers on every machine (the precision tests set it themselves)."""
    import net
    monkeypatch.setattr(net, 'cpu_has_bf16', lambda: False)


@pytest.fixture(autouse=True)
def cpu_unless_named(monkeypatch):
    """--device auto means the CPU in-process, so that the CPU tests (bit-exact resumes, equal losses) test the
    same thing on a GPU machine; tests/test_cuda.py names cuda. Tests that start processes pass --device cpu."""
    import net
    pick_device = net.pick_device
    monkeypatch.setattr(net, 'pick_device', lambda name: pick_device('cpu' if name == 'auto' else name))
