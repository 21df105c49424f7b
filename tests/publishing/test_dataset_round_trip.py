"""A pushed generation job loads with ``datasets.load_dataset``: its rows, its failures, its extras out of the way.

The job folder is written by ``toolkit.generation.outputs.write_outputs`` as a real job writes it, pushed to the
fake Hub, and read back in a fresh process with an empty cache through ``datasets.load_dataset`` only.
"""

from __future__ import annotations

import json

from tests.publishing.fresh_process import run_fresh
from toolkit.generation.outputs import ROW_INDEX, push_outputs, upload_plan, write_outputs

REPO = "fake-user/gec-candidates"


def job_rows() -> list[dict]:
    """Generated rows with the lineage columns a job writes (out of order: outputs sort them by row index)."""
    rows = []
    for index in (2, 0, 1):
        rows.append(
            {
                ROW_INDEX: index,
                "source": f"sentence {index} with a eror",
                "candidates": [f"sentence {index} with an error", f"sentence {index} with error"],
                "teacher_id": "openai:gpt-4o-mini@api.openai.com",
                "template_hash": "3f2a9c1d",
                "sampling": json.dumps({"temperature": 0.7, "n": 2}),
                "usage": json.dumps({"prompt_tokens": 10 + index, "completion_tokens": 5, "cost_usd": 0.001}),
            }
        )
    return rows


FAILURES = [
    {"item_id": "7", "request_index": 0, "error_type": "RateLimitError", "message": "429", "attempts": 3, ROW_INDEX: 7}
]

LOAD = """
import json, datasets
ds = datasets.load_dataset({repo!r}, {config}split="train")
print(json.dumps({{"columns": ds.column_names, "rows": ds.to_list()}}))
"""


def write_job(out_dir, failures):
    summary = {"rows_written": 3, "cost_usd": 0.003}
    card = {"name": "GEC candidates", "source_datasets": ["demo_gec"]}
    write_outputs(out_dir, job_rows(), failures=failures, summary=summary, configs={"job": {"k": 2}}, card=card)
    (out_dir / "openai_batches").mkdir()
    (out_dir / "openai_batches" / "batch_abc.json").write_text('{"id": "batch_abc"}')


def test_load_dataset_returns_the_rows_and_the_failures(fake_hub, tmp_path):
    out_dir = tmp_path / "job"
    write_job(out_dir, FAILURES)
    push_outputs(out_dir, REPO, token=fake_hub.token)

    files = set(fake_hub.files(REPO, repo_type="dataset"))
    assert {"README.md", "data/train-00000-of-00001.parquet", "failures/train-00000-of-00001.parquet"} <= files
    assert {"extras/summary.json", "extras/config.json", "extras/openai_batches/batch_abc.json"} <= files
    assert not any(f.startswith("dataset/") or f.endswith(".jsonl") for f in files)  # no row uploaded twice

    loaded = json.loads(run_fresh(LOAD.format(repo=REPO, config=""), fake_hub.url, tmp_path).splitlines()[-1])
    expected = sorted(job_rows(), key=lambda row: row[ROW_INDEX])
    assert loaded["columns"] == list(expected[0])
    assert loaded["rows"] == expected
    failures = run_fresh(LOAD.format(repo=REPO, config='"failures", '), fake_hub.url, tmp_path / "again")
    assert json.loads(failures.splitlines()[-1])["rows"] == FAILURES


def test_shards_go_up_once(tmp_path):
    out_dir = tmp_path / "job"
    write_job(out_dir, [])
    shard = out_dir / "shards" / "shard-00000-of-00002"
    write_outputs(shard, job_rows()[:1], failures=[], summary={"rows_written": 1}, configs={}, card={})
    plan = upload_plan(out_dir)
    shard_files = sorted(name for name in plan if "shards/" in name)
    assert shard_files == [
        "extras/shards/shard-00000-of-00002/config.json",
        "extras/shards/shard-00000-of-00002/summary.json",
    ]
    assert sum(name.endswith(".parquet") for name in plan) == 2  # the merged rows and failures, nothing else


LOAD_AT_REVISION = """
from toolkit.tasks.local import load_local
print(load_local({repo!r}, split="train", revision={revision!r}).num_rows)
"""


def test_a_pool_on_the_hub_loads_at_the_revision_asked_for(fake_hub, tmp_path):
    out_dir = tmp_path / "job"
    write_job(out_dir, [])
    first = push_outputs(out_dir, REPO, token=fake_hub.token).rsplit("/", 1)[1]
    write_outputs(out_dir, job_rows()[:1], failures=[], summary={}, configs={}, card={})
    push_outputs(out_dir, REPO, token=fake_hub.token)
    for revision, rows in ((first, 3), ("main", 1)):
        code = LOAD_AT_REVISION.format(repo=REPO, revision=revision)
        printed = run_fresh(code, fake_hub.url, tmp_path / f"fresh-{revision}", keep_toolkit=True)
        assert int(printed.splitlines()[-1]) == rows
