"""finish_run: one artifact set for every recipe, secrets nowhere, push when asked."""

import json
from dataclasses import dataclass

from toolkit.run import ARTIFACTS, Card, Push, finish_run


@dataclass
class Args:
    learning_rate: float = 3e-4
    hub_token: str | None = None


def _finish(tmp_path, **kw):
    return finish_run(
        tmp_path / "run",
        metrics={"test": {"accuracy": 0.75}, "n": 4},
        results_md="| model | acc |\n| --- | --- |\n| student | 0.75 |\n",
        predictions=[{"input": "a", "prediction": "b", "gold": "b"}],
        log_history=[{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}],
        config={"script_args": Args(hub_token="hf_secretsecretsecret")},
        card=Card(base_model="tiny", task="classification", recipe="demo", description="Trains a demo student."),
        **kw,
    )


def test_writes_every_artifact_with_content_and_no_secret(tmp_path):
    out = _finish(tmp_path)
    run = tmp_path / "run"
    assert out["hub_url"] is None
    assert sorted(p.name for p in run.iterdir() if p.name in ARTIFACTS) == sorted(ARTIFACTS)
    assert json.loads((run / "metrics.json").read_text())["test"]["accuracy"] == 0.75
    card = (run / "README.md").read_text()
    assert "Trains a demo student." in card and "| student | 0.75 |" in card
    assert json.loads((run / "run_config.json").read_text())["script_args"]["learning_rate"] == 3e-4
    for name in ARTIFACTS:
        if not name.endswith(".png"):
            assert "hf_secretsecretsecret" not in (run / name).read_text(), name


def test_other_processes_write_nothing(tmp_path):
    _finish(tmp_path, is_main=False)
    assert not (tmp_path / "run").exists()


def test_push_uploads_the_run(tmp_path, fake_hub):
    out = _finish(tmp_path, push=Push(repo_id="fake-user/demo", token=fake_hub.token))
    assert out["hub_url"].startswith(fake_hub.url)
    assert {"README.md", "metrics.json", "results.md"} <= set(fake_hub.files("fake-user/demo"))
