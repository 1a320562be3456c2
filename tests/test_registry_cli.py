"""`python -m keras_synapse.registry`: list, promote and roll back, with one-line errors and exit status 2."""

import subprocess
import sys

from conftest import model_card_fields

from keras_synapse.serving.registry import latest_version, register


def run_registry(*arguments, cwd):
    return subprocess.run([sys.executable, "-m", "keras_synapse.registry", *arguments], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def write_model(directory):
    (directory / "model.keras").write_text("weights")


def test_promote_rollback_and_list(tmp_path):
    register(tmp_path / "saved_models", "exp", write_model, model_card_fields())
    register(tmp_path / "saved_models", "exp", write_model, model_card_fields(), promote=False)
    result = run_registry("promote", "exp", "2", "--reason", "beats v1 on the holdout", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "exp: latest 1 -> 2" and latest_version(tmp_path / "saved_models" / "exp") == 2
    result = run_registry("list", "exp", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2 version(s), latest -> 2" in result.stdout and "made latest: beats v1 on the holdout" in result.stdout
    result = run_registry("rollback", "exp", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "exp: latest 2 -> 1 (rolled back)"
    assert latest_version(tmp_path / "saved_models" / "exp") == 1


def test_errors_are_one_line_with_exit_status_2(tmp_path):
    register(tmp_path / "models", "exp", write_model, model_card_fields())
    for arguments, message in [
        (("promote", "exp", "5"), "has no version 5: registered versions are 1."),
        (("promote", "exp"), "promote needs the VERSION to make latest (registered versions of models/exp: 1)."),
        (("rollback", "exp"), "no earlier latest to roll back to (version 1 was the first)"),
        (("list", "other"), "models/other holds no registered version (is the experiment name right? models "
                            "holds exp)."),
    ]:
        result = run_registry(*arguments, "--registry", "models", cwd=tmp_path)
        assert result.returncode == 2, (arguments, result.stderr)
        assert result.stderr.count("\n") == 1 and message in result.stderr, (arguments, result.stderr)
        assert result.stderr.startswith("error: ")
