"""A recipe run directory as the LMCor recipe leaves it (written with the toolkit's own reporting functions), and a
small candidates data-gen job against the fake OpenAI server.

The report tests (unit and headless browser) read it back instead of training a model: what matters to them is the
artifacts' format, which these calls produce exactly as a recipe does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

RESULT_ROWS = [
    {"method": "source copy", "gleu": 40.0, "bleu": 50.1},
    {"method": "first candidate", "gleu": 45.5, "bleu": 52.0},
    {"method": "oracle selection (corpus GLEU search)", "gleu": 90.0, "bleu": 91.0},
    {"method": "LMCor corrector", "gleu": 55.25, "bleu": 57.0},
    {"method": "random candidate", "gleu": 41.0, "bleu": 49.0},
]
BEST = "LMCor corrector"
SECRET = "sk-report-SECRET-123456789"


def make_gec_run_dir(run_dir: Path, n_rows: int = 8) -> dict:
    """Write a run record (metrics.json), predictions.jsonl, training_curves.png, run_config.json and README.md.

    Returns what a report of the folder must show: result row count, best row, test row count, figure files
    (``learning_curve.png`` is drawn by the report from ``metrics.json``).
    """
    from toolkit.configs import save_config
    from toolkit.publishing import reporting
    from toolkit.publishing.cards import render_model_card, save_card
    from toolkit.publishing.lineage import Lineage

    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = {
        "task": "jfleg",
        "task_type": "gec",
        "tables": {"results": RESULT_ROWS},
        "predictions": {
            "path": "predictions.jsonl",
            "rows": n_rows,
            "columns": {
                "input": "input",
                "prediction": "prediction",
                "references": "references",
                "source": "baseline:source copy",
            },
        },
        "learning_curve": [{"step": 2, "gleu": 41.0, "bleu": 50.0}, {"step": 4, "gleu": 55.25, "bleu": 57.0}],
    }
    reporting.write_metrics(run_dir, metrics)
    preds = []
    for i in range(n_rows):
        source = f"she go to school {i} ." if i else "she go to <b>school</b> & home ."
        preds.append(
            {
                "id": f"t{i}",
                "input": f"source: {source} || candidates: she goes to school {i} . || she went to school {i} .",
                "prediction": source.replace("go ", "goes "),
                "references": [source.replace("go ", "goes "), source.replace("go ", "went ")],
                "baseline:source copy": source,
                "baseline:first candidate": f"she goes to school {i} .",
            }
        )
    reporting.write_jsonl(run_dir / "predictions.jsonl", preds)
    history = [{"step": s, "loss": 3.0 / s} for s in (1, 2, 3, 4)] + [{"step": 4, "eval_loss": 1.0, "eval_gleu": 50.0}]
    reporting.plot_training_curves(history, run_dir / "training_curves.png")
    save_config(
        run_dir / "run_config.json",
        script={"task": "jfleg", "task_type": "gec", "api_key": SECRET},
        training={"learning_rate": 5e-3, "hub_token": SECRET},
    )
    lineage = Lineage(
        teacher_id="openai:gpt-4o-mini@api.openai.com",
        template_hash="0123456789abcdef",
        sampling={"temperature": 0.7, "n": 4},
        generated_dataset="runs/candidates-jfleg",
        dataset_fingerprint="feedfacefeedface",
        base_model="google/flan-t5-small",
        cost_usd=0.0421,
        num_teacher_calls=3016,
    )
    card = render_model_card(
        model_name=run_dir.name,
        base_model="google/flan-t5-small",
        task="gec",
        recipe="lmcor",
        metrics={"test": {"gleu": 55.25}},
        lineage=lineage,
    )
    save_card(run_dir, card)
    return {
        "n_results": len(RESULT_ROWS),
        "best": BEST,
        "n_rows": n_rows,
        "figures": ["training_curves.png", "learning_curve.png"],
    }


def run_candidates_job(fake_openai, tmp_path: Path, *extra: str) -> tuple[dict, Path]:
    """The candidates job on 12 GEC rows against the fake server; returns (summary, output dir)."""
    from data_gen import candidates

    src = tmp_path / "gec.jsonl"
    src.write_text(
        "".join(
            json.dumps({"id": f"s{i}", "source": f"she go to school {i} .", "references": [f"she goes {i} ."]}) + "\n"
            for i in range(12)
        )
    )

    def responder(prompt, index, seed, body):
        # The corrected form of the prompt's last sentence, one extra word on odd-numbered samples.
        number = re.findall(r"school (\d+)", prompt)[-1]
        return f"she goes to school {number} ." + " now" * (index % 2)

    fake_openai.responder = responder
    out = tmp_path / "out"
    args = [
        "--backend",
        "openai",
        "--model",
        "fake",
        "--base_url",
        fake_openai.base_url,
        "--api_key",
        SECRET,
        "--input_file",
        str(src),
        "--output_dir",
        str(out),
        "--cache_path",
        str(tmp_path / "c.sqlite"),
        "--input_template",
        "Sentence: {source}",
        "--output_template",
        "Corrected: {target}",
        "--num_demos",
        "1",
        "--num_candidates",
        "3",
        "--progress",
        "false",
        *extra,
    ]
    return candidates.main(*candidates.make_parser().parse_args_and_config(args)), out
