"""Build ``demo_gec.jsonl``: the offline GEC demo set shipped with the toolkit (the LMCor default run).

The clean sentences below were written for this project (no third-party text). Each one is corrupted twice with
seeded, rule-based edits of the kinds learners make — articles, subject-verb agreement, tense, prepositions,
spelling — giving ``(source = corrupted, references = [clean])`` pairs. Every row keeps ``group`` (the clean
sentence id) so splits can keep both corruptions of a sentence on the same side.

Regenerate (deterministic: same seed, same file):

    python toolkit/data/make_demo_gec.py            # writes toolkit/data/demo_gec.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from toolkit.data.demo_gec_edits import (
    AGREEMENT_EDITS,
    ARTICLE_EDITS,
    COMMON_MISSPELLINGS,
    PREPOSITION_EDITS,
    TENSE_EDITS,
)

SENTENCES = """\
She walked to the station before the sun came up.
My brother works at a bank in the city centre.
We have lived in this house for ten years.
The children are playing in the garden after lunch.
He doesn't like coffee, but he drinks a lot of tea.
I bought an umbrella because the forecast said it would rain.
The meeting was moved to Thursday afternoon.
They arrived at the airport two hours early.
Our teacher gave us a difficult exercise yesterday.
The cat is sleeping on the sofa again.
She has written three letters to her grandmother this month.
The museum opens at nine o'clock on weekdays.
I am interested in learning a new language.
He went to the library to return an old book.
The weather in the mountains changes very quickly.
We were waiting for the bus when it started to snow.
My parents visited Spain last summer.
This restaurant serves the best soup in town.
The students have finished their project on time.
She usually takes the train to work.
There is a small bakery at the end of the street.
He broke his arm while he was playing football.
I have never seen such a beautiful sunset.
The company hired twenty new employees in March.
We discussed the problem for an hour.
The dog barked at the postman every morning.
She speaks English and French fluently.
Please put the milk in the fridge.
They are going to build a new bridge across the river.
I forgot my keys at the office.
The film was longer than I expected.
He has been studying medicine since 2019.
My sister plays the piano beautifully.
We stayed at a hotel near the beach.
The book that you lent me was very interesting.
Each student has a locker in the hallway.
The price of bread has risen again.
I usually go jogging in the evening.
She is afraid of spiders.
The shop closes at six on Saturdays.
He asked me for advice about his new job.
Our neighbours have two cats and a dog.
The train was delayed because of the storm.
I would like a cup of tea, please.
They spent the whole weekend painting the kitchen.
The river flows through the middle of the town.
She found a wallet on the pavement and took it to the police.
My friend lives in a village near the coast.
We need to buy some vegetables for dinner.
The children were excited about the school trip.
He writes a short story every week.
The doctor told him to rest for a few days.
I met an old friend at the market yesterday.
The concert starts at eight in the evening.
She has lost her phone twice this year.
Most people in this area work in tourism.
The teacher explained the rule very clearly.
We took a lot of photos during our holiday.
He drives to work because there is no bus.
The flowers in the park are blooming early this year.
I didn't understand the question, so I asked again.
The baby is sleeping in the next room.
They have just moved into a bigger apartment.
She reads the newspaper every morning.
The road was closed for repairs last week.
My grandfather tells wonderful stories about his childhood.
The new manager is very friendly.
We watched a documentary about whales.
He is good at solving difficult problems.
The bus stops in front of the school.
I have been waiting here since ten o'clock.
Her brother is an engineer at a car factory.
The team won the match in the last minute.
They listened to the radio while they cooked dinner.
The hotel room had a view of the sea.
She bought a new dress for the wedding.
I am looking forward to meeting you.
The kids ran across the field.
He usually arrives at the office before eight.
The letter arrived on Monday morning.
We decided to walk because the weather was nice.
My mother cooks dinner for the whole family.
The library has thousands of old books.
She was born in a small town in the north.
The plane landed safely despite the wind.
I think the answer is in the second chapter.
The farmers are worried about the dry summer.
He gave a speech at his sister's wedding.
The window was open, so the room was cold.
We are planning a trip to the mountains.
The girl who lives next door is a talented singer.
It takes about an hour to get to the city.
They were surprised by the result of the election.
She cleans her room every Sunday.
The manager has approved our request.
I saw an interesting exhibition at the gallery.
He fixed the bicycle with an old tool.
The students listened carefully to the lecture.
The coffee was too hot to drink.
My uncle owns a farm with many cows.
She is responsible for the company's accounts.
We arrived in London on a rainy evening.
The boy fell asleep in the car.
He has already eaten his breakfast.
The city has changed a lot in recent years.
I prefer reading books to watching television.
They invited us to a party on Friday.
The cake tastes better than it looks.
She travels to Germany twice a year.
The police found the stolen car in a forest.
Our school has a large library and a swimming pool.
He couldn't find his glasses anywhere.
The nurse checked the patient's temperature.
We usually eat dinner at seven.
The moon was very bright last night.
Those shoes are too small for me.
She is the tallest girl in her class.
The workers are repairing the roof of the church.
I have known him since we were children.
The package was delivered to the wrong address.
He spends most of his free time in the garden.
The students were asked to write an essay about the environment.
My car needs new tyres before the winter.
They have been married for twenty years.
She laughed at the joke, although she had heard it before.
The kitchen smells of fresh bread.
He is going to start a new job in April.
We found a good restaurant on the internet.
The museum was full of tourists from all over the world.
I usually walk the dog after dinner.
The lesson begins at half past nine.
She told me a secret about her brother.
The shop on the corner sells fresh fish.
My computer stopped working this morning.
He was tired, so he went to bed early.
The garden looks lovely in the spring.
They played cards until midnight.
The phone rang while I was in the shower.
She wants to become a doctor when she grows up.
The bridge was built more than a hundred years ago.
I have a meeting with my boss at noon.
The students are preparing for their final exams.
He has a large collection of old coins.
We sat on a bench and watched the boats.
The water in the lake is very clean.
She thanked everyone for their help.
The train leaves from platform four.
"""

KINDS = ("article", "agreement", "tense", "preposition", "spelling")
_TOKEN = re.compile(r"[A-Za-z']+|[0-9]+|[^A-Za-z0-9'\s]+")


def _case_like(src: str, new: str) -> str:
    return new[:1].upper() + new[1:] if src[:1].isupper() and new else new


def _spelling(word: str, rng: random.Random) -> str:
    low = word.lower()
    if low in COMMON_MISSPELLINGS:
        return _case_like(word, COMMON_MISSPELLINGS[low])
    i = rng.randrange(1, len(word) - 1)
    op = rng.choice(("drop", "swap", "double"))
    if op == "drop":
        return word[:i] + word[i + 1 :]
    if op == "swap":
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


def corrupt(sentence: str, kind: str, rng: random.Random) -> str | None:
    """Apply one error of ``kind`` to ``sentence``; ``None`` when the sentence offers no place for it."""
    tokens = _TOKEN.findall(sentence)
    if kind == "spelling":
        spots = [i for i, t in enumerate(tokens) if t.isalpha() and len(t) >= 5]
    else:
        table = {"article": ARTICLE_EDITS, "agreement": AGREEMENT_EDITS, "tense": TENSE_EDITS}.get(
            kind, PREPOSITION_EDITS
        )
        spots = [i for i, t in enumerate(tokens) if t.lower() in table]
    if not spots:
        return None
    i = rng.choice(spots)
    if kind == "spelling":
        tokens[i] = _spelling(tokens[i], rng)
    else:
        tokens[i] = _case_like(tokens[i], rng.choice(table[tokens[i].lower()]))
    tokens = [t for t in tokens if t]
    # Re-join: a space before words, none before punctuation (the clean text is written that way).
    text = ""
    for t in tokens:
        text += t if (not text or t[0] in ".,;:!?") else " " + t
    text = text[:1].upper() + text[1:]
    return text if text != sentence else None


def build_rows(seed: int = 13, variants: int = 2) -> list[dict]:
    """Corrupt every clean sentence ``variants`` times with 1–2 seeded errors each."""
    rng = random.Random(seed)
    rows = []
    sentences = [s.strip() for s in SENTENCES.strip().splitlines() if s.strip()]
    for n, clean in enumerate(sentences):
        seen = set()
        for v in range(variants):
            for _attempt in range(20):
                kinds = rng.sample(KINDS, rng.choice((1, 1, 2)))
                text, applied = clean, []
                for kind in kinds:
                    new = corrupt(text, kind, rng)
                    if new is not None:
                        text, applied = new, applied + [kind]
                if applied and text not in seen:
                    break
            if not applied or text in seen:
                continue
            seen.add(text)
            rows.append(
                {
                    "id": f"demo-{n:03d}-{v}",
                    "group": f"s{n:03d}",
                    "source": text,
                    "references": [clean],
                    "errors": applied,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("demo_gec.jsonl")))
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    rows = build_rows(args.seed)
    with open(args.out, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
