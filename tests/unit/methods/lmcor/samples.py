"""A two-row LMCor pool shared by the method's unit tests: GEC sources, references, three systems' candidates."""

import random

from toolkit.methods.lmcor.config import LMCorConfig

POOL = [
    {
        "id": "r0",
        "source": "she go to school yesterday .",
        "references": ["she went to school yesterday .", "She went to school yesterday ."],
        "candidates": [
            "she goes to school yesterday .\n",
            "she went to school yesterday .",
            "she went to the school .",
        ],
        "systems": ["A", "B", "C"],
    },
    {
        "id": "r1",
        "source": "the dog run home",
        "references": ["the dog runs home ."],
        "candidates": ["a cat sat", "the dog runs home .", "the dog ran home ."],
        "systems": ["A", "B", "C"],
    },
]


def synthetic_pool(n: int = 40, seed: int = 0) -> list[dict]:
    """Candidates whose sentence-chrF ranking disagrees with corpus BLEU/GLEU: near-miss spellings (high chrF, no
    word match) against short exact fragments (few words, all matching)."""
    rng = random.Random(seed)
    words = "the cat sat on a mat while my dog ran to his big red house near our old school".split()
    rows = []
    for i in range(n):
        ref = " ".join(rng.sample(words, 8)) + " ."
        toks = ref.split()
        src = " ".join(t if j % 3 else t + "s" for j, t in enumerate(toks))
        near_miss = " ".join(t + "e" if len(t) > 2 else t for t in toks)  # char n-grams survive, words do not
        fragment = " ".join(toks[:4])  # 4 right words, heavy brevity penalty
        shuffled = " ".join(rng.sample(toks, len(toks)))
        rows.append(
            {
                "id": f"s{i}",
                "source": src,
                "references": [ref, " ".join(toks[::-1])],
                "candidates": [near_miss, fragment, shuffled, src],
                "systems": ["A", "B", "C", "D"],
            }
        )
    return rows


def mt_rows(systems: list[str], n: int) -> list[dict]:
    """``n`` translation rows, one candidate per system (``"<system> out <i>"``), two references each."""
    return [
        {
            "id": f"r{i}",
            "group": f"r{i}",
            "source": f"Quelle {i} Satz",
            "references": [f"ref {i} a", f"ref {i} b"],
            "candidates": [f"{system} out {i}" for system in systems],
            "systems": list(systems),
        }
        for i in range(n)
    ]


def held_out_config(**kwargs) -> LMCorConfig:
    """An MT config that trains on systems S1-S3 and tests on the unseen U1, U2."""
    return LMCorConfig(
        task="jsonl",
        task_type="mt",
        pool_path="x",
        train_systems=["S1", "S2", "S3"],
        test_systems=["U1", "U2"],
        separator=" || ",
        **kwargs,
    )
