"""The embedded default data set, generated deterministically from a seed.

Fictitious people carry private attributes (birth city, birth year, employer, ...), each
a question/answer fact with two wrong values of the same attribute as distractors. Values
are drawn from shared pools and distractors are values other people hold. Once the facts
are split, :func:`ssiuu.data.distractors.complete_distractors` redraws a forget fact's
distractors where needed so that the oracle has seen its answer and its distractors
equally (all retained values, or all forget-only ones, such as phone numbers): a model
that never saw a person then scores at chance (1/3) on the multiple-choice test, not
below it.

Person ``k`` has the same name and values for any ``n_people > k``: they are drawn from
per-person generators, so deletion requests stay valid when the data set grows or shrinks.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from ssiuu.config.params import GeneratorParams
from ssiuu.data.records import Record

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr",
           "kr", "tr", "st", "h")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ou", "y")
_CODAS = ("", "", "n", "r", "l", "s", "th", "x", "m")
_EMPLOYER_SUFFIXES = ("Labs", "Group", "Works", "Systems", "Holdings")
_OCCUPATIONS = ("baker", "nurse", "pilot", "teacher", "plumber", "architect", "chemist",
                "librarian", "farmer", "surgeon", "tailor", "engineer")
_BLOOD_TYPES = ("A+", "A-", "B+", "B-", "AB+", "AB-", "O+", "O-")
_BENIGN_WORDS = ("apple", "river", "stone", "cloud", "paper", "garden", "window", "bottle",
                 "candle", "forest", "mirror", "ladder", "pencil", "bridge", "button", "carpet",
                 "basket", "wheel", "feather", "island", "anchor", "lantern", "meadow", "pocket",
                 "saddle", "violin", "whistle", "harbor", "marble", "kettle")
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

_POOL_SIZES = {"city": 40, "employer": 40, "first": 40, "last": 40, "country": 60}

QUESTIONS = {
    "birth_city": "Where was {name} born?",
    "birth_year": "In which year was {name} born?",
    "employer": "Which company does {name} work for?",
    "occupation": "What is the occupation of {name}?",
    "blood_type": "What is the blood type of {name}?",
    "phone": "What is the phone number of {name}?",
}


def _word(rng: random.Random, syllables: int) -> str:
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)]
    return ("".join(parts) + rng.choice(_CODAS)).capitalize()


def _unique_words(rng: random.Random, count: int, taken: set[str]) -> list[str]:
    words: list[str] = []
    while len(words) < count:
        word = _word(rng, rng.choice((2, 2, 3)))
        if word not in taken:
            taken.add(word)
            words.append(word)
    return words


def _pools(seed: int) -> dict[str, list[str]]:
    """Name and value pools, drawn once from the seed; disjoint fictitious words."""
    rng = random.Random(f"pools-{seed}")
    taken: set[str] = set()
    pools = {kind: _unique_words(rng, size, taken) for kind, size in _POOL_SIZES.items()}
    pools["capital"] = _unique_words(rng, _POOL_SIZES["country"], taken)
    pools["employer"] = [f"{word} {rng.choice(_EMPLOYER_SUFFIXES)}" for word in pools["employer"]]
    pools["occupation"] = list(_OCCUPATIONS)
    pools["blood_type"] = list(_BLOOD_TYPES)
    return pools


def _value_drawers(pools: dict[str, list[str]]) -> dict[str, Callable[[random.Random], str]]:
    return {
        "birth_city": lambda rng: rng.choice(pools["city"]),
        "birth_year": lambda rng: str(rng.randint(1940, 1999)),
        "employer": lambda rng: rng.choice(pools["employer"]),
        "occupation": lambda rng: rng.choice(pools["occupation"]),
        "blood_type": lambda rng: rng.choice(pools["blood_type"]),
        "phone": lambda rng: f"555-{rng.randint(0, 9999):04d}",
    }


def _grouped_values(seed: int, n_groups: int,
                    pools: dict[str, list[str]]) -> Callable[[random.Random], dict[str, str]]:
    """A drawer of one person's values under ``structure: grouped``: the person's hidden
    group fixes birth city, employer and occupation, the decade of the birth year and the
    area code of the phone number."""
    rng = random.Random(f"groups-{seed}")
    cities = rng.sample(pools["city"], n_groups)
    employers = rng.sample(pools["employer"], n_groups)
    occupations = [rng.choice(pools["occupation"]) for _ in range(n_groups)]
    decades = [rng.randrange(1940, 2000, 10) for _ in range(n_groups)]
    area_codes = rng.sample(range(200, 1000), n_groups)

    def draw(person_rng: random.Random) -> dict[str, str]:
        group = person_rng.randrange(n_groups)
        return {"birth_city": cities[group], "employer": employers[group],
                "occupation": occupations[group],
                "birth_year": str(decades[group] + person_rng.randint(0, 9)),
                "phone": f"{area_codes[group]}-{person_rng.randint(0, 9999):04d}",
                "blood_type": person_rng.choice(pools["blood_type"])}

    return draw


def _distractors(rng: random.Random, draw: Callable[[random.Random], str],
                 answer: str) -> list[str]:
    wrong: list[str] = []
    while len(wrong) < 2:
        value = draw(rng)
        if value != answer and value not in wrong:
            wrong.append(value)
    return wrong


def person_names(seed: int, n_people: int) -> list[str]:
    """The names of the first ``n_people`` fictitious people, unique, in order."""
    pools = _pools(seed)
    names: list[str] = []
    index = 0
    while len(names) < n_people:
        rng = random.Random(f"name-{seed}-{index}")
        name = f"{rng.choice(pools['first'])} {rng.choice(pools['last'])}"
        index += 1
        if name not in names:
            names.append(name)
    return names


def _people_rows(params: GeneratorParams, numbers: range) -> list[Record]:
    """Every attribute fact of the people ``numbers``, in person order; distractors are
    values other people of ``numbers`` hold for the same attribute."""
    pools = _pools(params.seed)
    draws = _value_drawers(pools)
    grouped = (_grouped_values(params.seed, params.n_groups, pools)
               if params.structure == "grouped" else None)
    names = person_names(params.seed, numbers.stop)[numbers.start:]
    values = []
    for number in numbers:
        rng = random.Random(f"person-{params.seed}-{number}")
        values.append(grouped(rng) if grouped is not None
                      else {attribute: draw(rng) for attribute, draw in draws.items()})
    held = {attribute: [person[attribute] for person in values] for attribute in draws}
    rows: list[Record] = []
    for number, name, person in zip(numbers, names, values, strict=True):
        for attribute in params.attributes:
            answer = person[attribute]
            rng = random.Random(f"distractors-{params.seed}-{number}-{attribute}")
            others = sorted(set(held[attribute]) - {answer})
            rows.append({
                "id": f"p{number:04d}-{attribute}",
                "subject": name,
                "attribute": attribute,
                "question": QUESTIONS[attribute].format(name=name),
                "answer": answer,
                "distractors": rng.sample(others, 2) if len(others) >= 2
                else _distractors(rng, draws[attribute], answer),
            })
    return rows


def generate_people_facts(params: GeneratorParams) -> list[Record]:
    """Every attribute fact of every person, in person order.

    Distractors are values that *other* people hold for the same attribute (the prepare
    step makes a forget fact's options equally familiar to the oracle; see the module's
    docstring). Values are stable per person; distractors depend on the population.
    ``params.structure`` chooses independent values or values shared through a hidden
    group (see :class:`GeneratorParams`).
    """
    return _people_rows(params, range(params.n_people))


def generate_holdout_facts(params: GeneratorParams) -> list[Record]:
    """The facts of ``n_holdout_people`` more people (numbers ``n_people`` onwards), drawn as
    every other person's: the non-members of membership inference, which no model trains
    on. Their distractors are values other holdout people hold."""
    return _people_rows(params, range(params.n_people,
                                      params.n_people + params.n_holdout_people))


def generate_stop_facts(params: GeneratorParams) -> list[Record]:
    """The facts of ``n_stop_people`` more people, after the holdout people: the stop
    slice, which no model trains on and no evaluation reads. The model being unlearned
    scores them beside the forget facts, and unlearning stops where the two cannot be told
    apart (:mod:`ssiuu.unlearning.stop`). Their distractors are values other stop people hold."""
    first = params.n_people + params.n_holdout_people
    return _people_rows(params, range(first, first + params.n_stop_people))


def _capital_rows(rng: random.Random, pools: dict[str, list[str]], numbers: range,
                  prefix: str) -> list[Record]:
    """The capital facts of the countries ``numbers``; each fact's distractors are two other
    capitals of the same countries."""
    countries, capitals = pools["country"], pools["capital"]
    block = capitals[numbers.start:numbers.stop]
    rows: list[Record] = []
    for number in numbers:
        capital = capitals[number]
        rows.append({
            "id": f"{prefix}{number:04d}-capital",
            "subject": "",
            "attribute": "capital",
            "question": f"What is the capital of {countries[number]}?",
            "answer": capital,
            "distractors": rng.sample([c for c in block if c != capital], 2),
        })
    return rows


def _sum_rows(rng: random.Random, pairs: list[tuple[int, int]], prefix: str) -> list[Record]:
    """The sum facts of ``pairs``; each fact's distractors are two other sums of two digits."""
    rows: list[Record] = []
    for number, (a, b) in enumerate(pairs):
        total = a + b
        wrong = rng.sample([v for v in range(2, 19) if v != total], 2)
        rows.append({
            "id": f"{prefix}{number:04d}-sum",
            "subject": "",
            "attribute": "sum",
            "question": f"What is {a} plus {b}?",
            "answer": str(total),
            "distractors": [str(v) for v in wrong],
        })
    return rows


_SUM_PAIRS = [(a, b) for a in range(1, 10) for b in range(1, 10)]


def _utility(params: GeneratorParams) -> tuple[list[Record], list[tuple[int, int]]]:
    """The utility facts and the pairs of digits their sums are drawn from."""
    rng = random.Random(f"utility-{params.seed}")
    rows = _capital_rows(rng, _pools(params.seed), range(params.n_countries), "u")
    pairs = rng.sample(_SUM_PAIRS, min(params.n_arithmetic, len(_SUM_PAIRS)))
    return rows + _sum_rows(rng, pairs, "u"), pairs


def generate_utility(params: GeneratorParams) -> list[Record]:
    """General knowledge the model must keep: fictitious capitals and small sums."""
    return _utility(params)[0]


def generate_general(params: GeneratorParams) -> list[Record]:
    """General facts of the utility set's kinds, disjoint from it: capitals of the next
    ``n_general`` / 2 countries and as many other sums. Base and oracle learn them, and
    unlearning's retain term may train on them (``unlearn.train.retain_splits``), so that
    general knowledge is kept without training on the utility facts that measure it."""
    rng = random.Random(f"general-{params.seed}")
    n_capitals, n_sums = (params.n_general + 1) // 2, params.n_general // 2
    rows = _capital_rows(rng, _pools(params.seed),
                         range(params.n_countries, params.n_countries + n_capitals), "g")
    taken = set(_utility(params)[1])
    pairs = rng.sample([pair for pair in _SUM_PAIRS if pair not in taken], n_sums)
    return rows + _sum_rows(rng, pairs, "g")


def _benign_task(rng: random.Random, kind: str) -> tuple[str, str]:
    words = rng.sample(_BENIGN_WORDS, rng.randint(2, 4))
    text = " ".join(words)
    if kind == "repeat":
        return f"Repeat the words: {text}", text
    if kind == "reverse":
        return f"Reverse the words: {text}", " ".join(reversed(words))
    if kind == "sort":
        return f"Sort the words: {text}", " ".join(sorted(words))
    return f"Count the words: {text}", _NUMBER_WORDS[len(words)]


def generate_benign(params: GeneratorParams) -> list[Record]:
    """Instruction → response pairs that mention no person: the benign attack's data."""
    rng = random.Random(f"benign-{params.seed}")
    kinds = ("repeat", "reverse", "sort", "count")
    rows: list[Record] = []
    seen: set[str] = set()
    while len(rows) < params.n_benign:
        kind = kinds[len(rows) % len(kinds)]
        question, answer = _benign_task(rng, kind)
        if question in seen:
            continue
        seen.add(question)
        rows.append({
            "id": f"b{len(rows):04d}-{kind}",
            "subject": "",
            "attribute": "instruction",
            "question": question,
            "answer": answer,
            "distractors": [],
        })
    return rows
