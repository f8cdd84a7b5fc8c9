"""Two lenet processes at once share the cores: `import lenet` asks OpenMP to wait passively, unless the user chose."""

import os
import subprocess
import sys

import pytest

PRINT_POLICY = "import lenet, os; print(os.environ.get('OMP_WAIT_POLICY'))"


@pytest.mark.slow
@pytest.mark.parametrize("users_setting, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE"), ("", "")])
def test_import_lenet_sets_a_passive_openmp_wait_unless_the_user_set_one(users_setting, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if users_setting is not None:
        env["OMP_WAIT_POLICY"] = users_setting
    result = subprocess.run([sys.executable, "-c", PRINT_POLICY], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == expected


def test_the_policy_is_set_before_torch_is_imported():
    """libgomp reads OMP_WAIT_POLICY once, when torch loads it: lenet must set it before its first torch import."""
    source = open(os.path.join(os.path.dirname(__file__), "..", "lenet", "__init__.py"), encoding="utf-8").read()
    assert source.index('os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")') < source.index("from lenet.")
