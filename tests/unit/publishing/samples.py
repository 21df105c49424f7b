"""Card inputs shared by the publishing tests: a lineage and a model card with secrets planted in its config."""

from __future__ import annotations

from toolkit.publishing import cards
from toolkit.publishing.lineage import Lineage

SECRET_KEY = "sk-live-abcdef1234567890"
SECRET_HF = "hf_SeCrEtToKeN0987654321"


def sample_lineage() -> Lineage:
    return Lineage(
        teacher_id="openai:gpt-4o-mini@api.openai.com",
        template_hash="3f2a9c1d",
        sampling={"temperature": 0.7, "top_p": 0.95, "n": 4, "max_tokens": 128},
        generated_dataset="runs/gen/jfleg-candidates",
        dataset_fingerprint="a1b2c3d4e5f6",
        dataset_revision="deadbeef",
        base_model="google/flan-t5-small",
        cost_usd=1.234567,
        num_teacher_calls=754,
        extra={"prompt_tokens": 12345, "api_key": SECRET_KEY},
    )


def sample_model_card(**overrides) -> str:
    kwargs = dict(
        model_name="lmcor-t5-small-jfleg",
        base_model="google/flan-t5-small",
        task="gec",
        recipe="lmcor",
        metrics={"test": {"gleu": 61.234, "n": 747}, "oracle_gleu": 70.5, "note": "greedy"},
        lineage=sample_lineage(),
        training_config={
            "learning_rate": 3e-4,
            "num_train_epochs": 3,
            "teacher": {"api_key": SECRET_KEY, "base_url": "https://api.openai.com/v1"},
            "hub_token": SECRET_HF,
        },
        datasets=["jhu-clsp/jfleg", "/data/local/jfleg.jsonl"],
        tags=["gec"],
        extra_sections={"Limitations": "English only."},
    )
    kwargs.update(overrides)
    return cards.render_model_card(**kwargs)
