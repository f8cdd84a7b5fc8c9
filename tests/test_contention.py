"""Two lenet processes at once share the cores: `import lenet` shortens GNU OpenMP's spin, unless the user chose."""

import os
import subprocess
import sys

import pytest

PRINT_SETTINGS = "import lenet, os; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"


@pytest.mark.slow
@pytest.mark.parametrize("users_settings, expected", [
    ({}, "10000 None"),
    ({"GOMP_SPINCOUNT": "300000"}, "300000 None"),  # the user's spin count is kept
    ({"OMP_WAIT_POLICY": "ACTIVE"}, "None ACTIVE"),  # a user who chose a policy gets it unchanged
    ({"OMP_WAIT_POLICY": ""}, "None "),
])
def test_import_lenet_shortens_the_openmp_spin_unless_the_user_set_one(users_settings, expected):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    result = subprocess.run([sys.executable, "-c", PRINT_SETTINGS], env={**env, **users_settings},
                            capture_output=True, text=True, check=True)
    assert result.stdout.rstrip("\n") == expected


def test_the_spin_is_set_before_torch_is_imported():
    """libgomp reads its settings once, when torch loads it: lenet must set them before its first torch import."""
    source = open(os.path.join(os.path.dirname(__file__), "..", "lenet", "__init__.py"), encoding="utf-8").read()
    assert source.index('os.environ.setdefault("GOMP_SPINCOUNT", "10000")') < source.index("from lenet.")
