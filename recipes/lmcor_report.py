"""Write ``results/lmcor/*.md`` + ``*.json`` (+ the learning-curve PNG) from the stage JSONs of ``lmcor_results.py``.

Only reads finished stages (``results/lmcor/runs/<stage>.json`` and the run dirs' ``metrics.json``); a table whose
stages are missing says so. Every row of one table is scored on the same test rows (checked by id).
"""

from __future__ import annotations

import json
from pathlib import Path

from toolkit.configs import load_script

_results = load_script(Path(__file__).with_name("lmcor_results.py"))
OUT, RECIPE_STAGES, RUNS, stage_json = _results.OUT, _results.RECIPE_STAGES, _results.RUNS, _results.stage_json

NO_CAND = "no-candidates model (same student, same budget, source -> reference)"


def load(stage: str) -> dict | None:
    path = stage_json(stage)
    return json.loads(path.read_text()) if path.is_file() else None


def test_ids(stage: str) -> list[str] | None:
    path = RUNS / stage / "predictions.jsonl"
    if not path.is_file():
        return None
    return [json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()]


def model_row(res: dict) -> dict:
    return next(r for r in res["table"] if r["method"] == res.get("model_row", "LMCor corrector"))


def write(name: str, title: str, rows: list[dict], columns: list[str], notes: list[str], extra: dict) -> None:
    from toolkit.reporting import markdown_table

    OUT.mkdir(parents=True, exist_ok=True)
    md = [f"## {title}", "", markdown_table(rows, columns=columns), "", *notes]
    (OUT / f"{name}.md").write_text("\n".join(md).rstrip() + "\n")
    (OUT / f"{name}.json").write_text(json.dumps({"title": title, "rows": rows, "notes": notes, **extra}, indent=2))


def same_rows(stages: list[str]) -> bool:
    ids = [test_ids(s) for s in stages]
    ids = [i for i in ids if i is not None]
    return all(i == ids[0] for i in ids)


def per_system_rows(stage: str, systems: list[str]) -> list[dict]:
    """Each system's own output on the stage's test rows (re-derived from the same deterministic split)."""
    from lmcor_results import _splits

    from toolkit.methods import lmcor_scoring

    script_args, _, splits = _splits(RECIPE_STAGES[stage])
    rows = splits["test"]
    out = []
    for system in systems:
        hyps = [r["candidates"][r["systems"].index(system)] for r in rows]
        scores, _ = lmcor_scoring.score_outputs(
            "mt", [r["source"] for r in rows], hyps, [r["references"] for r in rows], tokenize=None
        )
        out.append({"method": f"system {system} (unseen)", **scores})
    return out


def deen_tables() -> None:
    k4, k1, nc, seen = load("deen_k4"), load("deen_k1"), load("deen_nocand"), load("deen_seen")
    if not k4:
        return
    cols = ["method", "bleu", "chrf"]
    args = dict(zip(k4["argv"][::2], k4["argv"][1::2]))
    from lmcor_results import parse_recipe_args

    script_args, _, train_args = parse_recipe_args(k4["argv"])
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
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else None


def significance() -> None:
    """Paired bootstrap resampling (sacrebleu, 1,000 samples) of the de-en models against two baselines."""
    from sacrebleu.metrics import BLEU, CHRF
    from sacrebleu.significance import PairedTest

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
    rows = []
    for base_name, key in (
        (best[len("baseline:") :], best),
        ("MBR (chrF consensus)", "baseline:MBR (chrF consensus)"),
    ):
        systems = [(base_name, [p[key] for p in k4]), *models]
        _, out = PairedTest(systems, {"bleu": BLEU(), "chrf": CHRF()}, refs, test_type="bs", n_samples=1000)()
        # sacrebleu keys them by its own names ("System", "BLEU", "chrF2"), in the order given
        scores = dict(zip(("bleu", "chrf"), [v for k, v in out.items() if k != "System"]))
        for i, (name, _) in enumerate(systems[1:], start=1):
            rows.append({
                "model": name, "vs": base_name,
                **{f"{m} delta": round(float(scores[m][i].score - scores[m][0].score), 2) for m in ("bleu", "chrf")},
                **{f"{m} p": round(float(scores[m][i].p_value), 3) for m in ("bleu", "chrf")},
                **{f"{m} 95% CI": round(float(scores[m][i].ci), 2) for m in ("bleu", "chrf")},
            })  # fmt: skip
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, ps in pts.items():
        ax.plot([p["step"] for p in ps], [p["chrf"] for p in ps], marker="o", label=name)
    best = next((r for r in k4["table"] if r["method"].startswith("best single")), None)
    if best:
        ax.axhline(best["chrf"], ls="--", c="grey", label=best["method"])
    ax.set_xlabel("training step (batch 4)")
    ax.set_ylabel("test chrF")
    ax.set_title("WMT22 de-en, unseen systems")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "wmt22_deen_curve.png", dpi=120)


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
    from lmcor_results import STAGES

    rows = []
    for stage in STAGES:
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
