"""The baseline policy: deterministic per seed, valid actions, persona-driven tilts, stance votes."""

from __future__ import annotations

from collections import Counter

from friendsim.agents import (
    Persona,
    generate_personas,
    make_baseline_policy,
)
from friendsim.agents.generator import dominant_lambdas
from friendsim.vocabulary import (
    TIMELINE_ACTIONS,
    Action,
    FeedItem,
    InboxMessage,
    Observation,
)

PERSONAS = generate_personas(10, seed=4)
USERS = tuple(p.id for p in PERSONAS)
STANCES = {p.id: p.stance_score for p in PERSONAS}


def _obs(me: str, w: int = 2, **over: object) -> Observation:
    feed = tuple(
        FeedItem(post_id=100 * w + k, author=USERS[k % 10], text=f"item {k}", topic=f"topic {k % 4}",
                 parent_id=(100 * w) if k % 3 == 0 and k else None, mentions=(me,) if k == 5 else ())
        for k in range(20)
    )  # fmt: skip
    base: dict[str, object] = dict(
        agent_id=me, window=w, now=float(w), theme="climate change", n_actions=3, feed=feed,
        inbox=(InboxMessage(dm_id=w, sender=USERS[(w + 1) % 10] if USERS[(w + 1) % 10] != me else USERS[0], text="hi"),),
        known_users=USERS, topics=("topic 0", "topic 1"),
    )  # fmt: skip
    base.update(over)
    return Observation(**base)  # type: ignore[arg-type]


def _check_valid(actions: tuple[Action, ...], obs: Observation) -> None:
    assert len(actions) == obs.n_actions
    ids = {i.post_id: i for i in obs.feed}
    for a in actions:
        assert a.type in obs.allowed
        match a.type:
            case "COM" | "REPOST":
                assert a.target_post in ids and a.text
            case "LIKE" | "DISLIKE":
                assert a.target_post in ids and ids[a.target_post].author != obs.agent_id
            case "DM":
                assert a.recipient in obs.known_users and a.recipient != obs.agent_id and a.text
            case "FOLLOW":
                assert a.recipient not in obs.followees and a.recipient != obs.agent_id
            case "UNFOLLOW":
                assert a.recipient in obs.followees
            case "POST":
                assert a.text and a.topic
            case _:
                assert a.text == ""
        if a.mention is not None:
            assert a.mention in obs.known_users and a.mention != obs.agent_id
            assert f"@{a.mention}" in a.text
        if a.type == "DM":
            assert a.mention != a.recipient


def _run(seed: int, windows: int = 6) -> list[object]:
    out: list[object] = []
    for p in PERSONAS:
        pol = make_baseline_policy(p, seed=seed, stances=STANCES)
        for w in range(2, 2 + windows):
            obs = _obs(p.id, w)
            d = pol.choose(obs)
            out.append(d)
            out.append(pol.choose_votes(obs, obs.feed))
            pol.record_outcome(w, d)
    return out


def test_deterministic_per_seed() -> None:
    assert _run(1) == _run(1)
    assert _run(1) != _run(2)


async def test_actions_valid_in_rounds_and_timeline_mode() -> None:
    for p in PERSONAS:
        pol = make_baseline_policy(p, seed=3, stances=STANCES)
        first = await pol.decide(_obs(p.id, 1, allowed=("POST",), feed=(), inbox=()))
        assert [a.type for a in first.actions] == ["POST"] * 3
        for w in range(2, 30):
            obs = _obs(p.id, w, allowed=TIMELINE_ACTIONS, followees=USERS[:3], n_actions=5)
            d = await pol.decide(obs)
            assert d.failures == ()
            _check_valid(d.actions, obs)
            pol.record_outcome(w, d.actions)
            obs = _obs(p.id, w)
            _check_valid((await pol.decide(obs)).actions, obs)


def test_no_feasible_targets_falls_back() -> None:
    p = PERSONAS[0]
    pol = make_baseline_policy(p, seed=1)
    obs = _obs(p.id, 2, feed=(), inbox=(), known_users=(p.id,), allowed=("COM", "DM", "NOT"))
    assert {a.type for a in pol.choose(obs)} == {"NOT"}


def _persona(dom: str, a: float = 0.5) -> Persona:
    return Persona(id="me", name="Me", big5={"O": 0.5, "C": 0.5, "E": 0.5, "A": a, "N": 0.5},
                   lambdas=dominant_lambdas(dom, 0.9), stance_score=0.8)  # fmt: skip


def _type_counts(p: Persona, n: int = 300) -> tuple[Counter[str], Counter[str], int, int]:
    pol = make_baseline_policy(p, seed=7)
    types: Counter[str] = Counter()
    tones: Counter[str] = Counter()
    mentions = 0
    dm_back = 0
    for w in range(2, 2 + n):
        obs = _obs("me", w, known_users=("me", *USERS))
        acts = pol.choose(obs)
        types.update(a.type for a in acts)
        tones.update(a.tone for a in acts if a.type != "NOT")
        mentions += sum(a.mention is not None for a in acts)
        dm_back += sum(a.type == "DM" and a.recipient == obs.inbox[0].sender for a in acts)
        pol.record_outcome(w, acts)
    return types, tones, mentions, dm_back


def test_lambda_tilts_choices() -> None:
    pre, _, pre_mentions, _ = _type_counts(_persona("PRE"))
    soc, _, _, _ = _type_counts(_persona("SOC"))
    coord, _, coord_mentions, coord_dm_back = _type_counts(_persona("COORD"))
    _, emo_tones, _, _ = _type_counts(_persona("EMO", a=0.8))
    _, crit_tones, _, _ = _type_counts(_persona("PRE", a=0.1))
    assert pre["POST"] > 2 * soc["POST"]
    assert soc["COM"] + soc["DM"] > 2 * (pre["COM"] + pre["DM"])
    assert coord_mentions > 3 * pre_mentions
    assert coord["DM"] > 0 and coord_dm_back / coord["DM"] > 0.5
    assert emo_tones["supportive"] / sum(emo_tones.values()) > 0.7
    assert crit_tones["critical"] > 3 * emo_tones["critical"]


def test_inf_comments_on_varied_topics() -> None:
    def topics(dom: str) -> int:
        pol = make_baseline_policy(_persona(dom), seed=11)
        seen: list[str] = []
        for w in range(2, 40):
            acts = pol.choose(_obs("me", w, known_users=("me", *USERS)))
            seen += [a.topic for a in acts if a.type == "COM"]
            pol.record_outcome(w, acts)
        return len(set(seen[:20]))

    assert topics("INF") >= 4


def test_votes_follow_stance_agreement() -> None:
    me = Persona(
        id="me",
        name="Me",
        big5={t: 0.5 for t in "OCEAN"},
        lambdas=dominant_lambdas("SOC"),
        stance_score=1.0,
    )
    pol = make_baseline_policy(me, seed=5, stances={"ally": 1.0, "foe": -1.0}, abstention=0.0)
    items = tuple(
        FeedItem(post_id=i, author="ally" if i % 2 else "foe", text="x", topic="t")
        for i in range(4000)
    )
    own = (FeedItem(post_id=99999, author="me", text="mine", topic="t"),)
    votes = pol.choose_votes(_obs("me"), items + own)
    assert 99999 not in votes and len(votes) == 4000
    ally = Counter(v for i, v in votes.items() if i % 2)
    foe = Counter(v for i, v in votes.items() if i % 2 == 0)
    assert ally[1] > 0.8 * (ally[1] + ally[-1]) and foe[-1] > 0.8 * (foe[1] + foe[-1])
    assert ally[1] > 100 and foe[-1] > 100


def _stranger_items(n: int, author: str = "other") -> tuple[FeedItem, ...]:
    return tuple(FeedItem(post_id=i, author=author, text="x", topic="t") for i in range(n))


def test_baseline_abstains_at_the_configured_rate_and_votes_on_its_ties() -> None:
    from friendsim.vocabulary import InboxMessage

    me = Persona(id="me", name="Me", big5={t: 0.5 for t in "OCEAN"},
                 lambdas=dominant_lambdas("SOC"), stance_score=0.0)  # fmt: skip
    stances = {"friend": 1.0, "other": 1.0}
    cast = {}
    for abstention in (0.0, 0.5, 1.0):
        pol = make_baseline_policy(me, seed=3, stances=stances, abstention=abstention)
        votes = pol.choose_votes(_obs("me"), _stranger_items(3000))
        cast[abstention] = sum(v != 0 for v in votes.values())
    assert cast[1.0] == 0
    assert 0.35 * cast[0.0] < cast[0.5] < 0.65 * cast[0.0]  # p scales with 1 - abstention
    # an author the agent talks with gets far more of its votes than a stranger
    pol = make_baseline_policy(me, seed=3, stances=stances, abstention=0.5)
    talk = tuple(InboxMessage(dm_id=i, sender="friend", text="hi") for i in range(3))
    pol.memory.observe(_obs("me", inbox=talk))
    friend = pol.choose_votes(_obs("me"), _stranger_items(3000, "friend"))
    stranger = pol.choose_votes(_obs("me"), _stranger_items(3000, "other"))
    n_friend = sum(v != 0 for v in friend.values())
    n_stranger = sum(v != 0 for v in stranger.values())
    assert n_friend > 4 * n_stranger > 0
    assert pol.vote_probability("friend", 1.0) > pol.vote_probability("other", 1.0)
    assert pol.vote_probability("other", 1.0) > pol.vote_probability("other", 0.5)


def test_baseline_follows_coach_tips_and_ignores_unusable_ones() -> None:
    from friendsim.vocabulary import Tip

    me, peer = USERS[0], USERS[3]
    tips = (
        Tip(action="DM", target=peer, topic="energy", invite_mention=False, tone="supportive",
            text="DM a03 about energy."),
        Tip(action="COM", target="top-liked post", topic="", invite_mention=True, tone="critical",
            text="Comment on the top-liked post."),
        Tip(action="FOLLOW", target=peer, topic="", invite_mention=False, tone="neutral",
            text="not allowed in rounds mode"),
    )  # fmt: skip
    feed = tuple(
        FeedItem(post_id=k, author=USERS[1 + k % 5], text=f"t{k}", topic="x", likes=k % 7)
        for k in range(1, 12)
    )
    obs = _obs(me, guidance=tips, feed=feed)
    policy = make_baseline_policy(PERSONAS[0], seed=1)
    policy.tip_compliance = 1.0
    actions = policy.choose(obs)
    _check_valid(actions, obs)
    assert (actions[0].type, actions[0].recipient, actions[0].tone) == ("DM", peer, "supportive")
    assert actions[0].topic == "energy"
    top = max(feed, key=lambda i: (i.likes, -i.post_id))
    assert (actions[1].type, actions[1].target_post, actions[1].tone) == (
        "COM",
        top.post_id,
        "critical",
    )
    assert actions[2].type != "FOLLOW"  # FOLLOW is not an allowed paper action


def test_baseline_without_tips_is_unchanged_by_compliance_setting() -> None:
    obs = _obs(USERS[2])
    a = make_baseline_policy(PERSONAS[2], seed=9)
    b = make_baseline_policy(PERSONAS[2], seed=9)
    b.tip_compliance = 0.0
    assert a.choose(obs) == b.choose(obs)
