"""Write ``results/lmcor/*.md`` + ``*.json`` (+ the learning-curve PNG) from the stage JSONs of ``lmcor_results.py``.

Only reads finished stages; a table whose stages are missing says so. Rows of a table: same test rows (ids checked).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from toolkit.configs import load_script
from toolkit.methods.lmcor.scoring import per_system_scores
from toolkit.publishing.reporting import write_result_table
from toolkit.tasks.readers import read_jsonl

_results = load_script(Path(__file__).with_name("lmcor_results.py"))
OUT, RECIPE_STAGES, RUNS, stage_json = _results.OUT, _results.RECIPE_STAGES, _results.RUNS, _results.stage_json

write = functools.partial(write_result_table, OUT)  # write(name, title, rows, columns, notes, extra)
NO_CAND = "no-candidates model (same student, same budget, source -> reference)"


def load(stage: str) -> dict | None:
    return json.loads(path.read_text()) if (path := stage_json(stage)).is_file() else None


def model_row(res: dict) -> dict:
    return next(r for r in res["table"] if r["method"] == res.get("model_row", "LMCor corrector"))


def same_rows(stages: list[str]) -> bool:
    ids = [[p["id"] for p in preds] for preds in map(predictions, stages) if preds is not None]
    return all(i == ids[0] for i in ids)


def per_system_rows(stage: str, systems: list[str]) -> list[dict]:
    """Each system's own output on the stage's test rows (re-derived from the same deterministic split)."""
    rows = _results._splits(RECIPE_STAGES[stage])[2]["test"]
    return [{"method": f"system {sys_} (unseen)", **scores} for sys_, scores in per_system_scores(rows, systems)]


def deen_tables() -> None:
    k4, k1, nc, seen = load("deen_k4"), load("deen_k1"), load("deen_nocand"), load("deen_seen")
    if not k4:
        return
    cols = ["method", "bleu", "chrf"]
    args = dict(zip(k4["argv"][::2], k4["argv"][1::2]))
    script_args, _, train_args = _results.parse_recipe_args(k4["argv"])
    rows = per_system_rows("deen_k4", script_args.test_systems)
    base = {r["method"]: r for r in k4["table"]}
    # "first candidate" is the first unseen system, already a row above
    rows += [dict(r) for m, r in base.items() if m not in ("LMCor corrector", "first candidate")]
    missing = []
    for label, res in ((NO_CAND, nc), (f"corrector k = 1 (reads {script_args.test_systems[0]})", k1)):
        if res:
            rows.append({**model_row(res), "method": label})
        else:
            missing.append(label)
    rows.append({**model_row(k4), "method": "corrector k = 4 (reads the 4 unseen systems)"})
    n = k4["training"]["test_rows"]
    notes = [
        f"{n} test segments (German source <= {script_args.max_source_words} words), the same rows for every row "
        f"of the table (ids checked: {same_rows(['deen_k4', 'deen_nocand', 'deen_k1'])}). Split: blocks of "
        f"{script_args.split_block} consecutive segments (WMT22 here has no document ids), seed "
        f"{script_args.split_seed}; {k4['training']['train_examples']} training examples (one per reference) of "
        f"which {train_args.max_steps} steps x {train_args.per_device_train_batch_size} are seen.",
        f"Training systems: {', '.join(script_args.train_systems)}. Unseen (test) systems: "
        f"{', '.join(script_args.test_systems)}.",
        "Oracle rows pick, per segment, among the 4 unseen systems' outputs to maximise the corpus metric with the "
        "references: not a real system. Student: SmolLM2-135M (English), LoRA r=16, same steps/batch/lr for all.",
        *[f"{k} signature: `{v}`" for k, v in k4["signatures"].items()],
    ]
    if missing:
        notes.append("Not run (budget): " + "; ".join(missing))
    write("wmt22_deen_unseen", "WMT22 de-en, unseen systems (plug-and-play)", rows, cols, notes,
          {"argv": args, "best_single_system_dev": k4.get("per_system_dev")})  # fmt: skip
    if seen:
        srows = [{**r, "method": r["method"].replace("LMCor corrector", "corrector k = 4 (trained on these)")}
                 for r in seen["table"]]  # fmt: skip
        write("wmt22_deen_seen", "WMT22 de-en, training systems (seen) on the same test segments", srows, cols,
              [f"The de-en k = 4 corrector reads the first 4 training systems ({', '.join(seen['systems_read'])}) "
               f"on the same {seen['test_rows']} test segments; baselines select among the same 4."], {})  # fmt: skip
    curve(k4, nc, train_args.max_steps)
    significance()


def predictions(stage: str) -> list[dict] | None:
    path = RUNS / stage / "predictions.jsonl"
    return read_jsonl(path) if path.is_file() else None


def significance() -> None:
    """Paired bootstrap resampling (sacrebleu, 1,000 samples) of the de-en models against two baselines."""
    from toolkit.methods.lmcor import scoring as lmcor_scoring

    k4 = predictions("deen_k4")
    if not k4:
        return
    refs = [[p["references"][j] for p in k4] for j in range(len(k4[0]["references"]))]
    best = next(k for k in k4[0] if k.startswith("baseline:best single"))
    models = [("corrector k = 4", [p["prediction"] for p in k4])]
    for stage, label in (("deen_k1", "corrector k = 1"), ("deen_nocand", "no-candidates model")):
        preds = predictions(stage)
        if preds and [p["id"] for p in preds] == [p["id"] for p in k4]:
            models.append((label, [p["prediction"] for p in preds]))
    baselines = [(best[len("baseline:") :], [p[best] for p in k4])]
    baselines.append(("MBR (chrF consensus)", [p["baseline:MBR (chrF consensus)"] for p in k4]))
    rows = lmcor_scoring.paired_bootstrap_rows(baselines, models, refs)
    cols = ["model", "vs", "bleu delta", "bleu p", "bleu 95% CI", "chrf delta", "chrf p", "chrf 95% CI"]
    write("wmt22_deen_significance", "WMT22 de-en unseen systems: paired bootstrap (sacrebleu, 1,000 samples)", rows,
          cols, ["p: sacrebleu's paired bootstrap p-value for the difference with the baseline named in 'vs' on "
                 "the same test segments; CI: the model's own 95% half-width. p > 0.05 = not distinguishable."],
          {})  # fmt: skip


def curve(k4: dict, nc: dict | None, max_steps: int) -> None:
    series = {"corrector k = 4": k4, NO_CAND: nc}
    pts = {}
    for name, res in series.items():
        if res:
            pts[name] = [*res.get("learning_curve", []), {"step": max_steps, **res["corrector"]}]
    steps = sorted({p["step"] for ps in pts.values() for p in ps})
    rows = []
    for s in steps:
        row = {"step": s}
        for name, ps in pts.items():
            p = next((p for p in ps if p["step"] == s), None)
            tag = "k4" if name.startswith("corrector") else "no-cand"
            row[f"{tag} chrF"], row[f"{tag} BLEU"] = (p["chrf"], p["bleu"]) if p else (None, None)
        rows.append(row)
    cols = ["step", *[c for c in rows[0] if c != "step"]] if rows else ["step"]
    write("wmt22_deen_curve", "WMT22 de-en learning curve (unseen systems, same test segments)", rows, cols,
          ["Test chrF / BLEU decoded at these optimizer steps (batch 4) of the same runs as the table."], {})  # fmt: skip
    from toolkit.publishing.reporting import plot_xy

    points = [{"step": p["step"], "chrF": p["chrf"], "series": name} for name, ps in pts.items() for p in ps]
    best = next((r for r in k4["table"] if r["method"].startswith("best single")), None)
    if best and steps:  # the best single system as a flat reference line across the curve
        points += [{"step": s, "chrF": best["chrf"], "series": best["method"]} for s in (steps[0], steps[-1])]
    plot_xy(points, "step", "chrF", "series", OUT / "wmt22_deen_curve.png", title="WMT22 de-en, unseen systems")


def jfleg_tables() -> None:
    k4, k1, nc, gem = load("jfleg_k4"), load("jfleg_k1"), load("jfleg_nocand"), load("jfleg_gemma")
    cols = ["method", "gleu", "bleu", "chrf"]
    if k4:
        rows = [{**r, "method": r["method"].replace("first candidate", "greedy candidate")} for r in k4["table"]
                if r["method"] != "LMCor corrector"]  # fmt: skip
        for label, res in ((NO_CAND, nc), ("corrector k = 1 (greedy candidate)", k1)):
            rows.append({**model_row(res), "method": label} if res else {"method": label + " (not run)"})
        rows.append({**model_row(k4), "method": "corrector k = 4"})
        n = k4["training"]["test_rows"]
        notes = [
            f"{n} held-out JFLEG dev sentences (the same for every row: "
            f"{same_rows(['jfleg_k4', 'jfleg_nocand', 'jfleg_k1'])}), 4 references, official GLEU on PTB-tokenised "
            f"hypotheses. Teacher: SmolLM2-135M-Instruct (3-shot, 1 greedy + 3 samples at T=0.7); student: "
            f"SmolLM2-135M LoRA, {k4['training']['train_examples']} training examples.",
            *[f"{k} signature: `{v}`" for k, v in k4["signatures"].items()],
        ]
        write("jfleg", "JFLEG (held-out part of dev), SmolLM2-135M teacher", rows, cols, notes, {})
    if gem:
        rows = [{**r, "method": r["method"].replace("LMCor corrector", "corrector k = 4 (trained on SmolLM2 cands)")}
                for r in gem["table"]]  # fmt: skip
        write("jfleg_plug_gemma", "JFLEG plug-and-play: Gemma 3 270M candidates, corrector never saw them", rows,
              cols, [f"{gem['test_rows']} test sentences (the JFLEG table's). Candidates: {gem['teacher']} (base "
                     "model, plain-text 3-shot prompt, 1 greedy + 3 samples); the corrector is the JFLEG k = 4 one."],
              {})  # fmt: skip


def budget() -> None:
    rows = []
    for stage in _results.STAGES:
        res = load(stage)
        if not res:
            rows.append({"stage": stage, "status": "not run"})
            continue
        tr, tm = res.get("training", {}), res.get("timings", {})
        rows.append({
            "stage": stage, "status": "done", "wall_s": res["budget"]["wall_s"], "cpu_s": res["budget"]["cpu_s"],
            "train_s": round(tm["train_s"], 1) if "train_s" in tm else None,
            "train_tokens_per_s": round(tr["train_tokens_per_s"], 1) if tr.get("train_tokens_per_s") else None,
            "generate_s": round(tm["generate_s"], 1) if "generate_s" in tm else None,
            "teacher_s": round(tm.get("candidates_s") or tm.get("teacher_candidates_s") or 0, 1),
        })  # fmt: skip
    cols = ["stage", "status", "wall_s", "cpu_s", "train_s", "train_tokens_per_s", "generate_s", "teacher_s"]
    total = sum(r.get("cpu_s") or 0 for r in rows)
    write("budget", "LMCor results budget", rows, cols,
          [f"Total CPU time of finished stages: {total / 60:.1f} core-minutes (1 intra-op thread, shared cores). "
           "train_tokens_per_s: non-padding tokens per second of training (wall clock)."], {})  # fmt: skip


def main() -> None:
    deen_tables()
    jfleg_tables()
    budget()


if __name__ == "__main__":
    main()
