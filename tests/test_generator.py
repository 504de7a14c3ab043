"""The default data generator: deterministic, stable per person, well-formed."""

from ssiuu.config.params import GeneratorParams
from ssiuu.data.generator import (
    generate_benign,
    generate_holdout_facts,
    generate_people_facts,
    generate_utility,
    person_names,
)
from ssiuu.data.prepare import split_by_requests
from ssiuu.data.requests import DeletionRequest


def test_same_seed_same_data_other_seed_other_data():
    params = GeneratorParams()
    first = generate_people_facts(params) + generate_utility(params) + generate_benign(params)
    second = generate_people_facts(params) + generate_utility(params) + generate_benign(params)
    assert first == second
    other = generate_people_facts(GeneratorParams(seed=1))
    assert [r["answer"] for r in other] != [r["answer"] for r in first[: len(other)]]


def test_person_is_the_same_whatever_the_population_size():
    small = generate_people_facts(GeneratorParams(n_people=10))
    large = generate_people_facts(GeneratorParams(n_people=40))
    def without_distractors(rows):
        return [{k: v for k, v in r.items() if k != "distractors"} for r in rows]
    assert without_distractors(large[: len(small)]) == without_distractors(small)
    assert person_names(0, 10) == person_names(0, 40)[:10]
    assert len(set(person_names(0, 40))) == 40


def test_holdout_people_are_the_next_people_and_in_no_training_fact():
    params = GeneratorParams(n_people=10, n_holdout_people=5)
    holdout = generate_holdout_facts(params)
    people = generate_people_facts(params)
    assert len(holdout) == 5 * len(params.attributes)
    assert not {r["subject"] for r in holdout} & {r["subject"] for r in people}
    assert not {r["id"] for r in holdout} & {r["id"] for r in people}
    larger = generate_people_facts(GeneratorParams(n_people=15))
    assert [(r["id"], r["subject"], r["question"], r["answer"]) for r in holdout] == [
        (r["id"], r["subject"], r["question"], r["answer"]) for r in larger[len(people):]]
    assert all(len(set(r["distractors"])) == 2 and r["answer"] not in r["distractors"]
               for r in holdout)
    assert generate_holdout_facts(GeneratorParams(n_holdout_people=0)) == []


def test_facts_have_two_distinct_wrong_distractors_and_unique_questions():
    rows = generate_people_facts(GeneratorParams()) + generate_utility(GeneratorParams())
    for row in rows:
        assert len(row["distractors"]) == 2
        assert len(set(row["distractors"])) == 2
        assert row["answer"] not in row["distractors"]
    assert len({r["question"] for r in rows}) == len(rows)
    people = generate_people_facts(GeneratorParams())
    for row in people:
        held_by_others = {r["answer"] for r in people
                          if r["attribute"] == row["attribute"] and r["subject"] != row["subject"]}
        assert set(row["distractors"]) <= held_by_others
    assert len({r["id"] for r in rows}) == len(rows)


def test_forget_and_retain_are_disjoint_and_cover_every_fact():
    params = GeneratorParams(n_people=12)
    facts = generate_people_facts(params)
    names = person_names(0, 12)
    request = DeletionRequest("r1", "2026-01-01", (names[2], names[5]), "req.json")
    forget, retain = split_by_requests(facts, [request])
    assert {r["subject"] for r in forget} == {names[2], names[5]}
    assert len(forget) == 2 * len(params.attributes)
    assert not {r["id"] for r in forget} & {r["id"] for r in retain}
    assert not {r["question"] for r in forget} & {r["question"] for r in retain}
    assert len(forget) + len(retain) == len(facts)


def test_benign_set_mentions_no_person():
    names = person_names(0, 60)
    benign = generate_benign(GeneratorParams(n_benign=200))
    assert len(benign) == 200
    texts = " ".join(r["question"] + " " + r["answer"] for r in benign)
    assert not any(name.split()[0] in texts or name.split()[1] in texts for name in names)


def _by_person(rows):
    people: dict[str, dict[str, str]] = {}
    for row in rows:
        people.setdefault(row["subject"], {})[row["attribute"]] = row["answer"]
    return people


ALL_ATTRIBUTES = ["birth_city", "birth_year", "employer", "occupation", "phone", "blood_type"]


def test_grouped_people_share_their_group_values():
    params = GeneratorParams(n_people=60, attributes=ALL_ATTRIBUTES, structure="grouped",
                             n_groups=5)
    people = _by_person(generate_people_facts(params))
    groups: dict[str, list[dict[str, str]]] = {}
    for person in people.values():
        groups.setdefault(person["employer"], []).append(person)
    assert len(groups) == 5 and all(len(members) >= 2 for members in groups.values())
    for members in groups.values():  # the employer fixes the group, and so the rest
        assert len({m["birth_city"] for m in members}) == 1
        assert len({m["occupation"] for m in members}) == 1
        assert len({m["birth_year"][:3] for m in members}) == 1  # one decade
        assert len({m["phone"][:3] for m in members}) == 1  # one area code
        assert len({m["phone"] for m in members}) == len(members)  # numbers are personal
    assert len({p["birth_city"] for p in people.values()}) == 5
    assert len({p["blood_type"] for p in people.values()}) > 5  # not a group value


def test_grouped_data_is_deterministic_and_keeps_names_and_distractor_rules():
    params = GeneratorParams(n_people=30, attributes=ALL_ATTRIBUTES, structure="grouped")
    rows = generate_people_facts(params)
    assert rows == generate_people_facts(params)
    assert [r["subject"] for r in rows] == [
        r["subject"] for r in generate_people_facts(params.model_copy(
            update={"structure": "independent"}))]
    held = {}
    for row in rows:
        held.setdefault(row["attribute"], set()).add(row["answer"])
    for row in rows:  # wrong values other people hold: the oracle has seen each candidate
        assert len(set(row["distractors"])) == 2 and row["answer"] not in row["distractors"]
        assert set(row["distractors"]) <= held[row["attribute"]]
    independent = _by_person(generate_people_facts(GeneratorParams(
        n_people=30, attributes=ALL_ATTRIBUTES)))
    assert len({p["birth_city"] for p in independent.values()}) > params.n_groups
