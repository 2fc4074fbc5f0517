"""Seeded synthetic persona generator.

Prefix-stable: persona ``i`` depends only on ``(i, seed, theme, options)``, never on ``n``, so
``generate_personas(10, seed=1)[:5] == generate_personas(5, seed=1)`` and a population that
grows during a run (an ``add_agents`` intervention) keeps the people already in it. Each persona
draws from its own ``random.Random(f"{seed}:persona:{i}")``; ids are ``a00``, ``a01`` ... ``a99``,
``a100`` ... (two digits at least, never padded by the population size).

- Big Five: each trait ~ Beta(2.5, 2.5) (centred, spread over [0, 1]); the two aspect facets of a
  trait are the trait score plus small Gaussian noise, clipped.
- Reward mix (the paper's figures): one dominant policy per agent. Dominant policies are spread
  evenly: each block of five consecutive agents gets a seeded permutation of ``COMPONENTS``, so
  in every prefix the counts differ by at most one.
  The dominant weight is ``dominant_weight`` (0.6) and the rest is split equally.
- Stance: a stance group (supportive / moderate / sceptical of the theme) drawn uniformly, with a
  numeric ``stance_score`` in [-1, 1] inside the group's band.
- Group attributes (for homophily): ``stance_group``, ``age_band``, ``gender``.
- Activity: lognormal(-σ²/2, σ = ``activity_sigma``): heavy-tailed with expected value 1 (not
  rescaled by the population's mean, which would depend on ``n``).
- Names: the first ``len(_FIRST) * len(_LAST)`` agents get distinct names (a seeded
  permutation of all pairs); later ones repeat them with a numeral.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

from friendsim.agents.persona import COMPONENTS, FACETS, TRAITS, Persona

_FIRST = (
    "Alex", "Bea", "Chen", "Dana", "Emeka", "Farah", "Gus", "Hana", "Ivan", "Jo", "Kemal", "Lena",
    "Mateo", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tara", "Uma", "Viktor", "Wen",
    "Xavi", "Yara", "Zoe", "Aiko", "Bruno", "Cleo", "Dev", "Elif", "Femi", "Greta", "Hugo",
)  # fmt: skip
_LAST = (
    "Adams", "Baker", "Costa", "Diaz", "Evans", "Fischer", "Gupta", "Horvat", "Ito", "Jensen",
    "Kim", "Lopez", "Moreau", "Nowak", "Okafor", "Park", "Quispe", "Rossi", "Silva", "Tanaka",
)  # fmt: skip
_ROLES = (
    "student", "teacher", "engineer", "nurse", "farmer", "journalist", "retiree", "small business owner",
    "researcher", "policy analyst", "activist", "software developer", "parent", "artist",
)  # fmt: skip
_STANCE_GROUPS: dict[str, tuple[float, float, str]] = {
    "supportive": (0.35, 1.0, "strongly cares about {theme} and wants bold action"),
    "moderate": (-0.35, 0.35, "sees both sides of {theme} and wants pragmatic, balanced steps"),
    "sceptical": (-1.0, -0.35, "is sceptical of alarm about {theme} and worries about costs"),
}
_AGE_BANDS = ("18-29", "30-44", "45-64", "65+")
_GENDERS = ("female", "male", "nonbinary")
_GENDER_WEIGHTS = (0.48, 0.48, 0.04)
_GENDER_CUM = tuple(itertools.accumulate(_GENDER_WEIGHTS))
"""What ``random.choices`` accumulates from ``weights`` on every call (the same draws)."""
_GROUP_NAMES = tuple(_STANCE_GROUPS)
_DOMINANT_BLURB = {
    "SOC": "wants to talk with people and build conversations",
    "INF": "wants to learn and explore many different topics",
    "PRE": "wants to be seen: posts often and likes approval",
    "COORD": "wants to coordinate: mentions people and answers messages",
    "EMO": "wants warm, emotionally supportive exchanges",
}


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _style(big5: dict[str, float]) -> str:
    bits = []
    bits.append(
        "chatty and energetic"
        if big5["E"] >= 0.6
        else "reserved"
        if big5["E"] <= 0.4
        else "even-toned"
    )
    bits.append(
        "warm and polite" if big5["A"] >= 0.6 else "blunt" if big5["A"] <= 0.4 else "fair-minded"
    )
    bits.append("curious, uses vivid examples" if big5["O"] >= 0.6 else "practical and concrete")
    if big5["N"] >= 0.65:
        bits.append("sometimes anxious or emotional")
    if big5["C"] >= 0.65:
        bits.append("careful and well organised")
    return ", ".join(bits)


def check_dominant_weight(dominant_weight: float) -> None:
    """Raise ``ValueError`` unless ``1/5 <= dominant_weight <= 1``: below 1/5 the other
    components' equal shares would outweigh the dominant one, and a persona whose ``dominant``
    does not have the largest weight is invalid (:class:`~friendsim.agents.persona.Persona`)."""
    least = 1.0 / len(COMPONENTS)
    if not least <= dominant_weight <= 1.0:
        if dominant_weight < least:
            why = f"below {least:g} the dominant component would not have the largest weight"
        elif dominant_weight > 1.0:
            why = "it is the dominant component's share of weights that sum to 1"
        else:
            why = "it is not a number"
        raise ValueError(f"dominant_weight={dominant_weight} must be in [{least:g}, 1]: {why}")


def dominant_lambdas(dominant: str, dominant_weight: float = 0.6) -> dict[str, float]:
    """The paper-style mix: ``dominant_weight`` on one component, the rest split equally
    (``dominant_weight`` as :func:`check_dominant_weight` allows, else ``ValueError``)."""
    if dominant not in COMPONENTS:
        raise ValueError(f"unknown component {dominant!r}; allowed {list(COMPONENTS)}")
    check_dominant_weight(dominant_weight)
    rest = (1.0 - dominant_weight) / (len(COMPONENTS) - 1)
    return {c: (dominant_weight if c == dominant else rest) for c in COMPONENTS}


def generate_personas(
    n: int,
    *,
    seed: int,
    theme: str = "climate change",
    dominant_weight: float = 0.6,
    activity_sigma: float = 1.0,
    id_prefix: str = "a",
    start: int = 0,
) -> list[Persona]:
    """``n`` synthetic personas, the ``start``-th on (deterministic per arguments and
    prefix-stable: see the module docstring); ``start`` lets a growing population add people."""
    if n < 1:
        raise ValueError(f"n={n} must be >= 1")
    if start < 0:
        raise ValueError(f"start={start} must be >= 0")
    if activity_sigma < 0:
        raise ValueError(f"activity_sigma={activity_sigma} must be >= 0")
    pairs = [f"{first} {last}" for first in _FIRST for last in _LAST]
    random.Random(f"{seed}:names").shuffle(pairs)
    mu = -(activity_sigma**2) / 2
    lambdas_of = {c: dominant_lambdas(c, dominant_weight) for c in COMPONENTS}
    stances = {g: blurb.format(theme=theme) for g, (_, _, blurb) in _STANCE_GROUPS.items()}
    facet_of = [(t, f) for t in TRAITS for f in FACETS[t]]
    n_pairs, n_comp = len(pairs), len(COMPONENTS)
    _check_texts(stances, id_prefix=id_prefix, last=start + n - 1, n_pairs=n_pairs)
    out: list[Persona] = []
    block: list[str] = []
    for i in range(start, start + n):
        rng = random.Random(f"{seed}:persona:{i}")
        if not block or i % n_comp == 0:
            block = list(COMPONENTS)
            random.Random(f"{seed}:dominant:{i // n_comp}").shuffle(block)
        beta, gauss = rng.betavariate, rng.gauss
        big5 = {t: round(beta(2.5, 2.5), 3) for t in TRAITS}
        facets = {f: round(min(1.0, max(0.0, big5[t] + gauss(0.0, 0.08))), 3) for t, f in facet_of}
        group = rng.choice(_GROUP_NAMES)
        lo, hi, _ = _STANCE_GROUPS[group]
        stance_score = round(rng.uniform(lo, hi), 3)
        age = rng.choice(_AGE_BANDS)
        gender = rng.choices(_GENDERS, cum_weights=_GENDER_CUM)[0]
        name = pairs[i % n_pairs]
        if i >= n_pairs:
            name = f"{name} {i // n_pairs + 1}"
        activity = rng.lognormvariate(mu, activity_sigma)
        role = rng.choice(_ROLES)
        dom = block[i % n_comp]
        stance = stances[group]
        first = name.split()[0]
        out.append(
            _generated(
                id=f"{id_prefix}{i:02d}",
                name=name,
                role=role,
                description=(
                    f"{first} ({age}) is {_article(role)} {role} who {stance}; on social media "
                    f"{first} {_DOMINANT_BLURB[dom]}."
                ),
                stance=stance,
                stance_score=stance_score,
                style=_style(big5),
                big5=big5,
                facets=facets,
                lambdas=dict(lambdas_of[dom]),
                dominant=dom,
                activity=min(1000.0, max(1e-3, activity)) if math.isfinite(activity) else 1.0,
                attributes={"stance_group": group, "age_band": age, "gender": gender},
            )
        )
    return out


def _check_texts(stances: dict[str, str], *, id_prefix: str, last: int, n_pairs: int) -> None:
    """Validate, once, a persona of the longest id, name, stance and description this call can
    make (the personas themselves are not validated: :func:`_generated`): what comes from the
    caller (``theme``, ``id_prefix``) is in every persona's strings, so one too long or an id
    that is not allowed is the validation error it always was, before anything is drawn."""
    first, last_name = max(_FIRST, key=len), max(_LAST, key=len)
    name = f"{first} {last_name}" + (f" {last // n_pairs + 1}" if last >= n_pairs else "")
    role = max(_ROLES, key=lambda r: len(_article(r)) + len(r))
    stance = max(stances.values(), key=len)
    Persona(
        id=f"{id_prefix}{last:02d}",
        name=name,
        role=role,
        description=(
            f"{first} ({max(_AGE_BANDS, key=len)}) is {_article(role)} {role} who {stance}; on "
            f"social media {first} {max(_DOMINANT_BLURB.values(), key=len)}."
        ),
        stance=stance,
        big5=dict.fromkeys(TRAITS, 0.5),
        lambdas=dominant_lambdas(COMPONENTS[0]),
    )


def _generated(**fields: Any) -> Persona:
    """A persona of the generator's making, built without running the validators again: what
    the generator draws is valid and already in the validators' normal form (rounded floats in
    [0, 1], lambdas summing to 1 in ``COMPONENTS`` order, a dominant with the largest weight,
    plain strings with no surrounding whitespace). Validating 100,000 of them took a quarter of
    a large run's set-up; ``tests/test_agents_persona.py`` checks that validating each one
    changes nothing."""
    return Persona.model_construct(**fields)
