"""The answer-quality set: 50 short factual questions and 50 arithmetic ones, 100 items in all.

The factual questions were written for this project (Apache-2.0, like the rest of it), on facts found in any
encyclopedia, each with the answers that count as right. The arithmetic items are generated from a fixed seed, so
the set is the same everywhere. Kept small on purpose: a 135M model answers each in well under a second.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    question: str
    answers: tuple[str, ...]  # any of these, normalised, found in the normalised reply counts as right
    kind: str


_FACTS = [
    ("What is the capital of France?", ("paris",)),
    ("What is the capital of Japan?", ("tokyo",)),
    ("What is the capital of Italy?", ("rome",)),
    ("What is the capital of Spain?", ("madrid",)),
    ("What is the capital of Germany?", ("berlin",)),
    ("What is the capital of Canada?", ("ottawa",)),
    ("What is the capital of Australia?", ("canberra",)),
    ("What is the capital of Egypt?", ("cairo",)),
    ("What is the capital of Russia?", ("moscow",)),
    ("What is the capital of the United Kingdom?", ("london",)),
    ("How many legs does a spider have?", ("8", "eight")),
    ("How many legs does an insect have?", ("6", "six")),
    ("How many days are there in a week?", ("7", "seven")),
    ("How many months are there in a year?", ("12", "twelve")),
    ("How many hours are there in a day?", ("24", "twenty four")),
    ("How many minutes are there in an hour?", ("60", "sixty")),
    ("How many continents are there?", ("7", "seven")),
    ("How many sides does a triangle have?", ("3", "three")),
    ("How many sides does a hexagon have?", ("6", "six")),
    ("How many planets are in the solar system?", ("8", "eight")),
    ("What is the largest planet in the solar system?", ("jupiter",)),
    ("Which planet is known as the red planet?", ("mars",)),
    ("Which planet is closest to the sun?", ("mercury",)),
    ("What star is at the centre of the solar system?", ("sun",)),
    ("What is the natural satellite of the Earth called?", ("moon",)),
    ("What colour is the sky on a clear day?", ("blue",)),
    ("What colour is grass?", ("green",)),
    ("What colour do you get by mixing blue and yellow?", ("green",)),
    ("What colour are ripe bananas?", ("yellow",)),
    ("What is frozen water called?", ("ice",)),
    ("What gas do plants take in from the air to make food?", ("carbon dioxide", "co2")),
    ("What gas do humans need to breathe to live?", ("oxygen",)),
    ("What is the chemical symbol for gold?", ("au",)),
    ("What is the chemical symbol for water?", ("h2o",)),
    ("At what temperature in Celsius does water freeze?", ("0", "zero")),
    ("At what temperature in Celsius does water boil at sea level?", ("100", "one hundred")),
    ("What is the largest ocean on Earth?", ("pacific",)),
    ("What is the longest river in Africa?", ("nile",)),
    ("What is the tallest mountain on Earth?", ("everest",)),
    ("Which animal is known as the king of the jungle?", ("lion",)),
    ("What is the largest mammal?", ("blue whale", "whale")),
    ("What do bees make?", ("honey",)),
    ("What is a baby cat called?", ("kitten",)),
    ("What is a baby dog called?", ("puppy",)),
    ("Who wrote Romeo and Juliet?", ("shakespeare",)),
    ("Who painted the Mona Lisa?", ("leonardo", "da vinci")),
    ("In which country are the pyramids of Giza?", ("egypt",)),
    ("What language is mainly spoken in Brazil?", ("portuguese",)),
    ("What is the opposite of hot?", ("cold",)),
    ("How many wheels does a bicycle have?", ("2", "two")),
]


def _arithmetic(count: int, seed: int = 2026) -> list[Item]:
    """Sums, differences and products of small numbers, in turn, each question once."""
    rng = random.Random(seed)
    found: dict[str, Item] = {}
    while len(found) < count:
        a, b = rng.randint(2, 40), rng.randint(2, 40)
        kind = len(found) % 3
        if kind == 0:
            item = Item(f"What is {a} + {b}?", (str(a + b),), "arithmetic")
        elif kind == 1:
            high, low = max(a, b), min(a, b)
            item = Item(f"What is {high} - {low}?", (str(high - low),), "arithmetic")
        else:
            a, b = a % 12 + 1, b % 12 + 1
            item = Item(f"What is {a} times {b}?", (str(a * b),), "arithmetic")
        found.setdefault(item.question, item)
    return list(found.values())


def items() -> list[Item]:
    """The 100 items, factual then arithmetic, interleaved so a prefix (--items N) has both kinds."""
    facts = [Item(question, answers, "fact") for question, answers in _FACTS]
    sums = _arithmetic(len(facts))
    return [item for pair in zip(facts, sums, strict=True) for item in pair]
