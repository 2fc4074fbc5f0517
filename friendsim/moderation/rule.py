"""The rule moderator: toxicity from a sentiment lexicon, keyword lists and fact-check labels.

An item is *toxic* when its sentiment score (VADER compound by default, in [-1, 1]) is at or
below ``-toxicity`` or when it contains one of ``keywords`` (whole words, case-insensitive).
A toxic item gets ``toxic_action`` (``remove`` by default) and its author a strike; at
``strikes_to_suspend`` strikes the author is suspended for ``suspend_windows`` windows (and the
count starts again); at ``strikes_to_shadowban`` strikes the author is shadowbanned (0: never).
An item injected with truth label ``false`` (or a repost of one) gets ``false_action``
(``label`` with ``label_text`` by default). Deterministic and a pure function of the items in
log order, so re-driving it over a recorded log gives the live decisions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from friendsim.analysis.sentiment import get_sentiment

from .base import ModerationItem, Review, Verdict

FALSE_LABEL = "Independent fact-checkers rated this claim false."


class RuleModerator:
    """See the module docstring."""

    name = "rule"
    concurrent = False

    def __init__(
        self,
        *,
        toxicity: float = 0.6,
        sentiment: str = "vader",
        keywords: Sequence[str] = (),
        toxic_action: Literal["remove", "label", "downrank", "shadowban", "none"] = "remove",
        false_action: Literal["remove", "label", "downrank", "none"] = "label",
        label_text: str = FALSE_LABEL,
        strikes_to_suspend: int = 0,
        suspend_windows: int = 2,
        strikes_to_shadowban: int = 0,
    ) -> None:
        if not 0.0 < toxicity <= 1.0:
            raise ValueError(f"toxicity threshold {toxicity} must be in (0, 1]")
        self.toxicity = toxicity
        self.sentiment = get_sentiment(sentiment)
        words = [k.strip().lower() for k in keywords if k.strip()]
        self._keywords = (
            re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)
            if words
            else None
        )
        self.toxic_action = toxic_action
        self.false_action = false_action
        self.label_text = label_text
        self.strikes_to_suspend = strikes_to_suspend
        self.suspend_windows = suspend_windows
        self.strikes_to_shadowban = strikes_to_shadowban
        self.strikes: dict[str, int] = {}
        self._total: dict[str, int] = {}

    def toxic(self, text: str) -> tuple[bool, float, str]:
        """``(toxic, score, reason)`` of one text."""
        score = self.sentiment.score(text) if text.strip() else 0.0
        if self._keywords is not None and (m := self._keywords.search(text)):
            return True, score, f"keyword {m.group(1).lower()!r}"
        if score <= -self.toxicity:
            return True, score, f"toxicity {score:.3f} <= -{self.toxicity}"
        return False, score, ""

    async def review(self, item: ModerationItem) -> Review:
        verdicts: list[Verdict] = []
        if item.truth == "false" and self.false_action != "none":
            if self.false_action == "label":
                verdicts.append(Verdict(action="label", label=self.label_text, reason="false"))
            else:
                verdicts.append(Verdict(action=self.false_action, reason="false"))
        toxic, score, reason = self.toxic(item.text)
        if toxic:
            if self.toxic_action == "label":
                verdicts.append(
                    Verdict(action="label", label="Flagged as abusive.", reason=reason, score=score)
                )
            elif self.toxic_action != "none":
                verdicts.append(Verdict(action=self.toxic_action, reason=reason, score=score))
            verdicts.extend(self._strike(item.author, score))
        return Review(verdicts=tuple(verdicts))

    def _strike(self, author: str, score: float) -> list[Verdict]:
        out: list[Verdict] = []
        self.strikes[author] = self.strikes.get(author, 0) + 1
        self._total[author] = self._total.get(author, 0) + 1
        if self.strikes_to_suspend and self.strikes[author] >= self.strikes_to_suspend:
            self.strikes[author] = 0
            out.append(
                Verdict(
                    action="suspend",
                    windows=self.suspend_windows,
                    reason=f"{self.strikes_to_suspend} strikes",
                    score=score,
                )
            )
        if self.strikes_to_shadowban and self._total[author] == self.strikes_to_shadowban:
            out.append(
                Verdict(action="shadowban", reason=f"{self.strikes_to_shadowban} strikes in all")
            )
        return out
